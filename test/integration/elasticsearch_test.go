package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
	"github.com/kubesift/kubesift/sink/elasticsearch"
)

// TestElasticsearchGround indexes 10,000 documents with esutil.BulkIndexer
// using create with explicit ids, counts them exactly, and checks that
// re-creating existing ids is refused with 409 (what idempotent writes rely on).
func TestElasticsearchGround(t *testing.T) {
	testenv.Short(t)
	url := testenv.ElasticsearchURL(t)
	es, err := elasticsearch.NewClient(config.ElasticsearchConfig{Addresses: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	index := fmt.Sprintf("it-ground-%d", time.Now().UnixNano())
	t.Cleanup(func() { es.Indices.Delete([]string{index}) })

	bulk := func(n int) (ok, conflicts, failed int64) {
		bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
			Client: es, Index: index, NumWorkers: 2, FlushBytes: 1 << 20, FlushInterval: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			body, _ := json.Marshal(map[string]any{"n": i, "@timestamp": time.Now().UTC(), "msg": strings.Repeat("x", 200)})
			err := bi.Add(ctx, esutil.BulkIndexerItem{
				Action: "create", DocumentID: "doc-" + strconv.Itoa(i), Body: bytes.NewReader(body),
				OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) { atomic.AddInt64(&ok, 1) },
				OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
					if res.Status == 409 {
						atomic.AddInt64(&conflicts, 1)
						return
					}
					atomic.AddInt64(&failed, 1)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := bi.Close(ctx); err != nil {
			t.Fatal(err)
		}
		return ok, conflicts, failed
	}
	if ok, conf, failed := bulk(10000); ok != 10000 || conf != 0 || failed != 0 {
		t.Fatalf("first load: ok=%d conflicts=%d failed=%d", ok, conf, failed)
	}
	if ok, conf, failed := bulk(100); ok != 0 || conf != 100 || failed != 0 {
		t.Fatalf("re-create: ok=%d conflicts=%d failed=%d, want 100 conflicts", ok, conf, failed)
	}
	if _, err := es.Indices.Refresh(es.Indices.Refresh.WithIndex(index)); err != nil {
		t.Fatal(err)
	}
	res, err := es.Count(es.Count.WithIndex(index), es.Count.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.IsError() {
		t.Fatalf("count: %s", res.String())
	}
	var c struct{ Count int }
	if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Count != 10000 {
		t.Errorf("count = %d, want 10000", c.Count)
	}
}
