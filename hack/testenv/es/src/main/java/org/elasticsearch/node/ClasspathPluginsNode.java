/*
 * kubesift test environment: a real org.elasticsearch.node.Node whose plugins
 * come from the classpath (see ClasspathPluginsService). Everything else -
 * cluster coordination, indexing, search, the REST layer - is the stock server
 * code. Lives in this package because NodeServiceProvider and
 * Node(NodeConstruction) are package-private (Elasticsearch's MockNode does the
 * same).
 */
package org.elasticsearch.node;

import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;

import java.util.Collection;
import java.util.List;

public class ClasspathPluginsNode extends Node {

    public ClasspathPluginsNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
        super(NodeConstruction.prepareConstruction(environment, null, new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment env, PluginsLoader pluginsLoader) {
                return new ClasspathPluginsService(env.settings(), env, List.copyOf(plugins));
            }
        }, true));
    }
}
