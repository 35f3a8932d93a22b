package dev.kubesift.testenv.es;

import org.apache.logging.log4j.LogManager;
import org.elasticsearch.Build;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.ClasspathPluginsNode;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.Plugin;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Runs one real Elasticsearch node in this JVM, for kubesift's integration
 * tests. Settings come from $ES_PATH_CONF/elasticsearch.yml (written by
 * hack/testenv/es.sh) exactly as for a distribution; logging from
 * $ES_PATH_CONF/log4j2.properties.
 *
 * This replaces the distribution's launcher (org.elasticsearch.bootstrap.Elasticsearch)
 * and so deliberately skips what only matters for production hosts: the JVM
 * option computation, the native controller, mlockall/seccomp, jar-hell, the
 * entitlement agent (8.18+) / security manager, and module-layer isolation
 * of plugins. Bootstrap checks are not enforced because the node uses
 * discovery.type=single-node on loopback, as in a distribution.
 *
 * Usage: java -cp 'lib/*:es-runner.jar' dev.kubesift.testenv.es.EsRunner HOME CONFIG_DIR
 */
public final class EsRunner {

    /** Plugins loaded when their class is on the classpath. */
    private static final String[] PLUGINS = {
        "org.elasticsearch.transport.netty4.Netty4Plugin",
        "org.elasticsearch.xpack.core.XPackPlugin",
        "dev.kubesift.testenv.es.TestenvShimPlugin",
    };

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: EsRunner <path.home> <config dir>");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Path config = Path.of(args[1]).toAbsolutePath();
        Files.createDirectories(home);

        LogConfigurator.registerErrorListener();
        Settings initial = Settings.builder().put(Environment.PATH_HOME_SETTING.getKey(), home.toString()).build();
        Environment env = InternalSettingsPreparer.prepareEnvironment(initial, Map.of(), config, () -> "kubesift-es");
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(env.settings()));
        LogConfigurator.configure(env, true);

        List<Class<? extends Plugin>> plugins = new ArrayList<>();
        for (String name : PLUGINS) {
            try {
                plugins.add(Class.forName(name).asSubclass(Plugin.class));
            } catch (ClassNotFoundException e) {
                System.err.println("plugin not on the classpath, skipped: " + name);
            }
        }
        LogManager.getLogger(EsRunner.class)
            .info("starting Elasticsearch {} ({}) with classpath plugins {}", Build.current().version(), Build.current().hash(), plugins);

        Node node = new ClasspathPluginsNode(env, plugins);
        CountDownLatch keepAlive = new CountDownLatch(1);
        Thread shutdown = new Thread(() -> {
            try {
                node.prepareForClose();
                node.close();
                if (node.awaitClose(30, TimeUnit.SECONDS) == false) {
                    System.err.println("node did not close within 30s");
                }
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                keepAlive.countDown();
            }
        }, "kubesift-es-shutdown");
        Runtime.getRuntime().addShutdownHook(shutdown);
        try {
            node.start();
        } catch (Throwable t) {
            t.printStackTrace();
            Runtime.getRuntime().halt(1);
        }
        keepAlive.await();
    }
}
