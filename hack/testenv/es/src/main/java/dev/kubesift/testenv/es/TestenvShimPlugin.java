package dev.kubesift.testenv.es;

import org.apache.lucene.util.SetOnce;
import org.elasticsearch.Build;
import org.elasticsearch.action.ActionListener;
import org.elasticsearch.action.admin.indices.create.AutoCreateAction;
import org.elasticsearch.action.admin.indices.create.CreateIndexRequest;
import org.elasticsearch.action.datastreams.GetDataStreamAction;
import org.elasticsearch.action.datastreams.GetDataStreamAction.Response.DataStreamInfo;
import org.elasticsearch.action.datastreams.GetDataStreamAction.Response.IndexProperties;
import org.elasticsearch.action.datastreams.GetDataStreamAction.Response.ManagedBy;
import org.elasticsearch.action.support.master.AcknowledgedResponse;
import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.cluster.ClusterState;
import org.elasticsearch.cluster.ClusterStateUpdateTask;
import org.elasticsearch.cluster.health.ClusterStateHealth;
import org.elasticsearch.cluster.metadata.DataStream;
import org.elasticsearch.cluster.metadata.IndexMetadata;
import org.elasticsearch.cluster.metadata.Metadata;
import org.elasticsearch.cluster.metadata.MetadataDataStreamsService;
import org.elasticsearch.cluster.metadata.MetadataIndexTemplateService;
import org.elasticsearch.cluster.node.DiscoveryNodes;
import org.elasticsearch.cluster.service.ClusterService;
import org.elasticsearch.common.Priority;
import org.elasticsearch.common.Strings;
import org.elasticsearch.common.io.stream.NamedWriteableRegistry;
import org.elasticsearch.common.regex.Regex;
import org.elasticsearch.common.settings.ClusterSettings;
import org.elasticsearch.common.settings.IndexScopedSettings;
import org.elasticsearch.common.settings.Setting;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.common.settings.SettingsFilter;
import org.elasticsearch.cluster.metadata.IndexNameExpressionResolver;
import org.elasticsearch.core.TimeValue;
import org.elasticsearch.features.NodeFeature;
import org.elasticsearch.index.Index;
import org.elasticsearch.index.IndexNotFoundException;
import org.elasticsearch.index.IndexVersion;
import org.elasticsearch.plugins.ActionPlugin;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.rest.BaseRestHandler;
import org.elasticsearch.rest.RestController;
import org.elasticsearch.rest.RestHandler;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.rest.RestUtils;
import org.elasticsearch.rest.action.RestToXContentListener;
import org.elasticsearch.threadpool.ThreadPool;
import org.elasticsearch.xcontent.XContentBuilder;
import org.elasticsearch.xpack.core.ilm.LifecycleSettings;
import org.elasticsearch.xpack.core.ilm.RolloverAction;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Predicate;
import java.util.function.Supplier;

import static org.elasticsearch.rest.RestRequest.Method.DELETE;
import static org.elasticsearch.rest.RestRequest.Method.GET;
import static org.elasticsearch.rest.RestRequest.Method.HEAD;
import static org.elasticsearch.rest.RestRequest.Method.PUT;

/**
 * Thin REST adapters for endpoints whose Elasticsearch modules are not
 * published to Maven Central (rest-root, data-streams, reindex). Everything they do is
 * delegated to stock server code:
 *  - GET/HEAD /                    like modules/rest-root's RestMainAction (same JSON fields).
 *  - PUT /_data_stream/{name}      via the server's AutoCreateAction with requireDataStream=true,
 *                                  i.e. the same code path as indexing into a new data stream.
 *  - GET /_data_stream[/{name}]    the server's GetDataStreamAction.Response / DataStreamInfo rendering.
 *  - DELETE /_data_stream/{name}   MetadataDataStreamsService.deleteDataStreams (server).
 *  - POST /{index}/_delete_by_query  see DeleteByQueryHandler (scroll + _bulk deletes).
 * Not provided: lifecycle/options/settings/stats/migrate/modify/promote data stream APIs.
 *
 * It also registers the ILM settings (index.lifecycle.name, ...) that the
 * x-pack-ilm plugin would register, so index templates written for a real
 * distribution are accepted. They are stored but nothing acts on them: ILM
 * itself (and its _ilm REST API) is not on Maven Central.
 */
public class TestenvShimPlugin extends Plugin implements ActionPlugin {

    private final SetOnce<ClusterService> clusterService = new SetOnce<>();
    private final SetOnce<ThreadPool> threadPool = new SetOnce<>();
    private final Settings settings;

    public TestenvShimPlugin(Settings settings) {
        this.settings = settings;
    }

    @Override
    public List<Setting<?>> getSettings() {
        return List.of(
            LifecycleSettings.LIFECYCLE_POLL_INTERVAL_SETTING,
            LifecycleSettings.LIFECYCLE_NAME_SETTING,
            LifecycleSettings.LIFECYCLE_INDEXING_COMPLETE_SETTING,
            LifecycleSettings.LIFECYCLE_HISTORY_INDEX_ENABLED_SETTING,
            LifecycleSettings.LIFECYCLE_STEP_MASTER_TIMEOUT_SETTING,
            LifecycleSettings.LIFECYCLE_STEP_WAIT_TIME_THRESHOLD_SETTING,
            LifecycleSettings.LIFECYCLE_ROLLOVER_ONLY_IF_HAS_DOCUMENTS_SETTING,
            LifecycleSettings.LIFECYCLE_SKIP_SETTING,
            RolloverAction.LIFECYCLE_ROLLOVER_ALIAS_SETTING
        );
    }

    @Override
    public Collection<?> createComponents(PluginServices services) {
        clusterService.set(services.clusterService());
        threadPool.set(services.threadPool());
        return List.of();
    }

    @Override
    public Collection<RestHandler> getRestHandlers(
        Settings settings,
        NamedWriteableRegistry namedWriteableRegistry,
        RestController restController,
        ClusterSettings clusterSettings,
        IndexScopedSettings indexScopedSettings,
        SettingsFilter settingsFilter,
        IndexNameExpressionResolver indexNameExpressionResolver,
        Supplier<DiscoveryNodes> nodesInCluster,
        Predicate<NodeFeature> clusterSupportsFeature
    ) {
        return List.of(
            new RootHandler(),
            new PutDataStreamHandler(),
            new GetDataStreamHandler(),
            new DeleteDataStreamHandler(),
            new DeleteByQueryHandler(threadPool::get)
        );
    }

    /** Data streams named by a comma-separated list of names/wildcards; a missing concrete name is a 404 like in ES. */
    private static List<DataStream> resolve(Metadata metadata, String expression) {
        Map<String, DataStream> all = metadata.dataStreams();
        if (expression == null || expression.isEmpty() || expression.equals("_all")) {
            expression = "*";
        }
        Map<String, DataStream> out = new LinkedHashMap<>();
        for (String name : Strings.splitStringByCommaToArray(expression)) {
            if (Regex.isSimpleMatchPattern(name)) {
                all.keySet().stream().sorted().filter(n -> Regex.simpleMatch(name, n)).forEach(n -> out.put(n, all.get(n)));
            } else if (all.containsKey(name)) {
                out.put(name, all.get(name));
            } else {
                throw new IndexNotFoundException(name);
            }
        }
        return new ArrayList<>(out.values());
    }

    private final class RootHandler extends BaseRestHandler {
        @Override
        public String getName() {
            return "kubesift_main_action";
        }

        @Override
        public List<Route> routes() {
            return List.of(new Route(GET, "/"), new Route(HEAD, "/"));
        }

        @Override
        protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
            return channel -> {
                if (request.method() == HEAD) {
                    channel.sendResponse(new RestResponse(RestStatus.OK, RestResponse.TEXT_CONTENT_TYPE, org.elasticsearch.common.bytes.BytesArray.EMPTY));
                    return;
                }
                ClusterState state = clusterService.get().state();
                Build build = Build.current();
                XContentBuilder b = channel.newBuilder();
                b.startObject();
                b.field("name", clusterService.get().localNode().getName());
                b.field("cluster_name", state.getClusterName().value());
                b.field("cluster_uuid", state.metadata().clusterUUID());
                b.startObject("version")
                    .field("number", build.qualifiedVersion())
                    .field("build_flavor", build.flavor())
                    .field("build_type", build.type().displayName())
                    .field("build_hash", build.hash())
                    .field("build_date", build.date())
                    .field("build_snapshot", build.isSnapshot())
                    .field("lucene_version", IndexVersion.current().luceneVersion().toString())
                    .field("minimum_wire_compatibility_version", build.minWireCompatVersion())
                    .field("minimum_index_compatibility_version", build.minIndexCompatVersion())
                    .endObject();
                b.field("tagline", "You Know, for Search");
                b.endObject();
                channel.sendResponse(new RestResponse(RestStatus.OK, b));
            };
        }
    }

    private static final class PutDataStreamHandler extends BaseRestHandler {
        @Override
        public String getName() {
            return "kubesift_create_data_stream_action";
        }

        @Override
        public List<Route> routes() {
            return List.of(new Route(PUT, "/_data_stream/{name}"));
        }

        @Override
        protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
            CreateIndexRequest create = new CreateIndexRequest(request.param("name")).cause("create-data-stream").requireDataStream(true);
            create.masterNodeTimeout(RestUtils.getMasterNodeTimeout(request));
            create.ackTimeout(RestUtils.getAckTimeout(request));
            return channel -> client.execute(
                AutoCreateAction.INSTANCE,
                create,
                new RestToXContentListener<AcknowledgedResponse>(channel).<org.elasticsearch.action.admin.indices.create.CreateIndexResponse>map(
                    r -> AcknowledgedResponse.of(r.isAcknowledged())
                )
            );
        }
    }

    private final class GetDataStreamHandler extends BaseRestHandler {
        @Override
        public String getName() {
            return "kubesift_get_data_streams_action";
        }

        @Override
        public List<Route> routes() {
            return List.of(new Route(GET, "/_data_stream"), new Route(GET, "/_data_stream/{name}"));
        }

        @Override
        protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
            String names = request.param("name");
            request.param("verbose");
            request.param("include_defaults");
            request.param("expand_wildcards");
            return channel -> {
                ClusterState state = clusterService.get().state();
                List<DataStreamInfo> infos = new ArrayList<>();
                for (DataStream ds : resolve(state.metadata(), names)) {
                    String[] backing = ds.getIndices().stream().map(Index::getName).toArray(String[]::new);
                    String template = MetadataIndexTemplateService.findV2Template(state.metadata(), ds.getName(), ds.isHidden());
                    String dsPolicy = template == null
                        ? null
                        : state.metadata().templatesV2().get(template).template() == null
                        || state.metadata().templatesV2().get(template).template().settings() == null
                            ? null
                            : state.metadata().templatesV2().get(template).template().settings().get("index.lifecycle.name");
                    Map<Index, IndexProperties> props = new HashMap<>();
                    for (Index index : ds.getIndices()) {
                        IndexMetadata im = state.metadata().index(index);
                        String policy = im == null ? null : im.getSettings().get("index.lifecycle.name");
                        props.put(
                            index,
                            new IndexProperties(
                                im == null || im.getSettings().getAsBoolean("index.lifecycle.prefer_ilm", true),
                                policy,
                                policy == null ? ManagedBy.UNMANAGED : ManagedBy.ILM,
                                im == null || im.getIndexMode() == null ? "standard" : im.getIndexMode().getName()
                            )
                        );
                    }
                    infos.add(
                        new DataStreamInfo(
                            ds,
                            false,
                            new ClusterStateHealth(state, backing).getStatus(),
                            template,
                            dsPolicy,
                            null,
                            props,
                            true,
                            null,
                            ds.getIndexMode() == null ? "standard" : ds.getIndexMode().getName()
                        )
                    );
                }
                new RestToXContentListener<GetDataStreamAction.Response>(channel).onResponse(new GetDataStreamAction.Response(infos));
            };
        }
    }

    private final class DeleteDataStreamHandler extends BaseRestHandler {
        @Override
        public String getName() {
            return "kubesift_delete_data_stream_action";
        }

        @Override
        public List<Route> routes() {
            return List.of(new Route(DELETE, "/_data_stream/{name}"));
        }

        @Override
        protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
            String names = request.param("name");
            TimeValue timeout = RestUtils.getMasterNodeTimeout(request);
            request.param("expand_wildcards");
            return channel -> {
                ActionListener<AcknowledgedResponse> listener = new RestToXContentListener<>(channel);
                clusterService.get().submitUnbatchedStateUpdateTask("kubesift-delete-data-stream [" + names + "]", new ClusterStateUpdateTask(Priority.HIGH, timeout) {
                    @Override
                    public ClusterState execute(ClusterState current) {
                        Set<DataStream> toDelete = Set.copyOf(resolve(current.metadata(), names));
                        if (toDelete.isEmpty()) {
                            return current;
                        }
                        return MetadataDataStreamsService.deleteDataStreams(current, toDelete, settings);
                    }

                    @Override
                    public void onFailure(Exception e) {
                        listener.onFailure(e);
                    }

                    @Override
                    public void clusterStateProcessed(ClusterState oldState, ClusterState newState) {
                        listener.onResponse(AcknowledgedResponse.TRUE);
                    }
                });
            };
        }
    }
}
