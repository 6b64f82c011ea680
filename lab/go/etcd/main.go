// Command etcd is a minimal single-member etcd for the pgdrill lab, built on
// go.etcd.io/etcd/server/v3/embed (the etcd main module is not served by the
// module proxy). It listens on loopback only.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		log.Fatalf("bad url %q: %v", s, err)
	}
	return *u
}

func main() {
	dataDir := flag.String("data-dir", "etcd-data", "data directory")
	name := flag.String("name", "lab", "member name")
	client := flag.String("listen-client-urls", "http://127.0.0.1:2379", "client URL (loopback)")
	peer := flag.String("listen-peer-urls", "http://127.0.0.1:2380", "peer URL (loopback)")
	metrics := flag.String("listen-metrics-urls", "", "metrics URL (optional, loopback)")
	quotaBytes := flag.Int64("quota-backend-bytes", 2<<30, "backend quota")
	unsafeNoFsync := flag.Bool("unsafe-no-fsync", false, "skip fsync (lab speed; unsafe)")
	flag.Parse()

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{mustURL(*client)}
	cfg.AdvertiseClientUrls = cfg.ListenClientUrls
	cfg.ListenPeerUrls = []url.URL{mustURL(*peer)}
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	if *metrics != "" {
		cfg.ListenMetricsUrls = []url.URL{mustURL(*metrics)}
	}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.QuotaBackendBytes = *quotaBytes
	cfg.UnsafeNoFsync = *unsafeNoFsync
	cfg.LogLevel = "warn"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("start etcd: %v", err)
	}
	defer e.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-e.Server.ReadyNotify():
		log.Printf("etcd ready on %s", *client)
	case err := <-e.Err():
		log.Fatalf("etcd: %v", err)
	case <-sig:
		return
	}
	select {
	case err := <-e.Err():
		log.Fatalf("etcd: %v", err)
	case <-sig:
		log.Printf("etcd stopping")
	}
}
