// Command etcd is the etcd server built from go.etcd.io/etcd/server/v3's
// etcdmain, so the test ground needs no prebuilt download: the Go module
// proxy is the only registry it uses.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
