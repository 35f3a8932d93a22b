package dev.kubesift.testenv.es;

import org.elasticsearch.action.bulk.BulkItemResponse;
import org.elasticsearch.action.bulk.BulkRequest;
import org.elasticsearch.action.bulk.BulkResponse;
import org.elasticsearch.action.delete.DeleteRequest;
import org.elasticsearch.action.search.ClearScrollRequest;
import org.elasticsearch.action.search.SearchRequest;
import org.elasticsearch.action.search.SearchResponse;
import org.elasticsearch.action.search.SearchScrollRequest;
import org.elasticsearch.action.support.IndicesOptions;
import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.common.Strings;
import org.elasticsearch.core.TimeValue;
import org.elasticsearch.index.query.QueryBuilders;
import org.elasticsearch.index.reindex.BulkByScrollResponse;
import org.elasticsearch.index.reindex.BulkByScrollTask;
import org.elasticsearch.index.reindex.ScrollableHitSource;
import org.elasticsearch.rest.BaseRestHandler;
import org.elasticsearch.rest.RestChannel;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.search.SearchHit;
import org.elasticsearch.search.builder.SearchSourceBuilder;
import org.elasticsearch.search.sort.SortOrder;
import org.elasticsearch.threadpool.ThreadPool;
import org.elasticsearch.xcontent.XContentBuilder;
import org.elasticsearch.xcontent.XContentParser;
import org.elasticsearch.xcontent.XContentType;
import org.elasticsearch.xcontent.json.JsonXContent;
import org.elasticsearch.common.xcontent.XContentHelper;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

import static org.elasticsearch.rest.RestRequest.Method.POST;

/**
 * POST /{index}/_delete_by_query, synchronous only (wait_for_completion=true),
 * because modules/reindex is not on Maven Central. Same algorithm as the real
 * one, built from stock server actions: scroll over the matching documents
 * (seq_no + primary term, no _source) and delete each batch with a _bulk of
 * deletes guarded by if_seq_no/if_primary_term, so concurrent writes show up
 * as version conflicts; conflicts=abort (default) stops at the first one.
 * The response is the server's BulkByScrollResponse rendering (took, deleted,
 * batches, version_conflicts, failures, ...). Not supported: slices,
 * requests_per_second throttling, wait_for_completion=false, _rethrottle.
 */
final class DeleteByQueryHandler extends BaseRestHandler {

    private final Supplier<ThreadPool> threadPool;

    DeleteByQueryHandler(Supplier<ThreadPool> threadPool) {
        this.threadPool = threadPool;
    }

    @Override
    public String getName() {
        return "kubesift_delete_by_query_action";
    }

    @Override
    public List<Route> routes() {
        return List.of(new Route(POST, "/{index}/_delete_by_query"));
    }

    @Override
    protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) throws java.io.IOException {
        if (request.paramAsBoolean("wait_for_completion", true) == false) {
            throw new IllegalArgumentException("this test node only supports wait_for_completion=true for _delete_by_query");
        }
        String[] indices = Strings.splitStringByCommaToArray(request.param("index"));
        String conflictsParam = request.param("conflicts", "abort");
        long maxDocsParam = request.paramAsLong("max_docs", -1);
        boolean refresh = request.paramAsBoolean("refresh", false);
        int batchSize = request.paramAsInt("scroll_size", 1000);
        TimeValue scroll = request.paramAsTime("scroll", TimeValue.timeValueMinutes(5));
        String q = request.param("q");
        String routing = request.param("routing");
        IndicesOptions indicesOptions = IndicesOptions.fromRequest(request, IndicesOptions.strictExpandOpen());
        request.param("timeout");
        request.param("wait_for_active_shards");
        request.param("slices");
        request.param("requests_per_second");

        SearchSourceBuilder source = new SearchSourceBuilder();
        String conflictsBody = null;
        long maxDocsBody = -1;
        if (request.hasContentOrSourceParam()) {
            Map<String, Object> body;
            try (XContentParser p = request.contentOrSourceParamParser()) {
                body = p.mapOrdered();
            }
            Object c = body.remove("conflicts");
            conflictsBody = c == null ? null : c.toString();
            Object m = body.remove("max_docs");
            maxDocsBody = m == null ? -1 : ((Number) m).longValue();
            if (body.containsKey("slice")) {
                throw new IllegalArgumentException("this test node does not support sliced _delete_by_query");
            }
            XContentBuilder rest = JsonXContent.contentBuilder().map(body);
            try (XContentParser p = XContentHelper.createParser(request.contentParserConfig(), org.elasticsearch.common.bytes.BytesReference.bytes(rest), XContentType.JSON)) {
                source.parseXContent(p, true, f -> true);
            }
        }
        if (q != null) {
            source.query(QueryBuilders.queryStringQuery(q));
        }
        final boolean proceedOnConflicts = "proceed".equals(conflictsBody != null ? conflictsBody : conflictsParam);
        final long maxDocs = maxDocsBody >= 0 ? maxDocsBody : maxDocsParam;
        source.size(maxDocs >= 0 ? (int) Math.min(batchSize, maxDocs) : batchSize);
        source.trackTotalHits(true).fetchSource(false).seqNoAndPrimaryTerm(true).version(true).sort("_doc", SortOrder.ASC);
        SearchRequest search = new SearchRequest(indices, source).scroll(scroll).indicesOptions(indicesOptions).routing(routing);

        return channel -> threadPool.get().generic().execute(() -> {
            try {
                run(client, channel, search, scroll, proceedOnConflicts, maxDocs, refresh, indices, indicesOptions);
            } catch (Exception e) {
                try {
                    channel.sendResponse(new RestResponse(channel, e));
                } catch (Exception inner) {
                    e.addSuppressed(inner);
                }
            }
        });
    }

    private static void run(
        NodeClient client,
        RestChannel channel,
        SearchRequest search,
        TimeValue scroll,
        boolean proceedOnConflicts,
        long maxDocs,
        boolean refresh,
        String[] indices,
        IndicesOptions indicesOptions
    ) throws Exception {
        long start = System.nanoTime();
        long total = 0, deleted = 0, conflicts = 0;
        int batches = 0;
        List<BulkItemResponse.Failure> failures = new ArrayList<>();
        List<ScrollableHitSource.SearchFailure> searchFailures = new ArrayList<>();
        String scrollId = null;
        try {
            SearchResponse page = client.search(search).actionGet();
            boolean stop = false;
            while (true) {
                SearchHit[] hits;
                try {
                    scrollId = page.getScrollId();
                    if (page.getHits().getTotalHits() != null && batches == 0) {
                        total = page.getHits().getTotalHits().value;
                        if (maxDocs >= 0) {
                            total = Math.min(total, maxDocs);
                        }
                    }
                    for (var f : page.getShardFailures()) {
                        searchFailures.add(new ScrollableHitSource.SearchFailure(f.getCause(), f.index(), f.shardId(), null));
                    }
                    hits = page.getHits().getHits();
                    BulkRequest bulk = new BulkRequest();
                    for (SearchHit hit : hits) {
                        if (maxDocs >= 0 && deleted + conflicts + failures.size() + bulk.numberOfActions() >= maxDocs) {
                            stop = true;
                            break;
                        }
                        DeleteRequest d = new DeleteRequest(hit.getIndex(), hit.getId());
                        if (hit.getSeqNo() >= 0) {
                            d.setIfSeqNo(hit.getSeqNo()).setIfPrimaryTerm(hit.getPrimaryTerm());
                        }
                        if (hit.field("_routing") != null) {
                            d.routing(hit.field("_routing").getValue());
                        }
                        bulk.add(d);
                    }
                    if (bulk.numberOfActions() > 0) {
                        batches++;
                        BulkResponse br = client.bulk(bulk).actionGet();
                        for (BulkItemResponse item : br.getItems()) {
                            if (item.isFailed() == false) {
                                deleted++;
                            } else if (item.getFailure().getStatus() == RestStatus.CONFLICT) {
                                conflicts++;
                                if (proceedOnConflicts == false) {
                                    failures.add(item.getFailure());
                                    stop = true;
                                }
                            } else {
                                failures.add(item.getFailure());
                                stop = true;
                            }
                        }
                    }
                } finally {
                    page.decRef();
                }
                if (stop || hits.length == 0 || searchFailures.isEmpty() == false) {
                    break;
                }
                page = client.searchScroll(new SearchScrollRequest(scrollId).scroll(scroll)).actionGet();
            }
        } finally {
            if (scrollId != null) {
                ClearScrollRequest clear = new ClearScrollRequest();
                clear.addScrollId(scrollId);
                client.clearScroll(clear).actionGet();
            }
        }
        if (refresh) {
            client.admin().indices().prepareRefresh(indices).setIndicesOptions(indicesOptions).get();
        }
        BulkByScrollTask.Status status = new BulkByScrollTask.Status(
            null, total, 0, 0, deleted, batches, conflicts, 0, 0, 0,
            TimeValue.ZERO, Float.POSITIVE_INFINITY, null, TimeValue.ZERO
        );
        BulkByScrollResponse response = new BulkByScrollResponse(
            TimeValue.timeValueNanos(System.nanoTime() - start), status, failures, searchFailures, false
        );
        RestStatus restStatus = RestStatus.OK;
        for (BulkItemResponse.Failure f : failures) {
            if (f.getStatus().getStatus() > restStatus.getStatus()) {
                restStatus = f.getStatus();
            }
        }
        XContentBuilder b = channel.newBuilder();
        b.startObject();
        response.toXContent(b, channel.request());
        b.endObject();
        channel.sendResponse(new RestResponse(restStatus, b));
    }
}
