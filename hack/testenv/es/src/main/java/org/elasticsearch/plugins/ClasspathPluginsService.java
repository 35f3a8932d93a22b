/*
 * kubesift test environment: a PluginsService whose plugins are plain classes
 * on the application classpath instead of bundles under $ES_HOME/modules and
 * $ES_HOME/plugins. This is what Elasticsearch's own test framework
 * (MockPluginsService) and org.codelibs' cluster-runner do; it lives in this
 * package because PluginsService.LoadedPlugin, PluginsLoader's constructor and
 * the static helpers it needs are package-private.
 */
package org.elasticsearch.plugins;

import org.elasticsearch.Build;
import org.elasticsearch.action.admin.cluster.node.info.PluginsAndModules;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.spi.SPIClassIterator;

import java.lang.reflect.Constructor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

public class ClasspathPluginsService extends PluginsService {

    private final List<LoadedPlugin> classpathPlugins;

    public ClasspathPluginsService(Settings settings, Environment environment, Collection<Class<? extends Plugin>> pluginClasses) {
        super(settings, environment.configDir(), new PluginsLoader(Set.of(), Set.of(), Map.of()));
        List<LoadedPlugin> loaded = new ArrayList<>();
        for (Class<? extends Plugin> pluginClass : pluginClasses) {
            Plugin plugin = loadPlugin(pluginClass, settings, environment.configDir());
            PluginDescriptor descriptor = new PluginDescriptor(
                pluginClass.getName(),
                "classpath plugin",
                "NA",
                Build.current().version(),
                Integer.toString(Runtime.version().feature()),
                pluginClass.getName(),
                null,
                List.of(),
                false,
                false,
                false,
                false
            );
            loaded.add(new LoadedPlugin(descriptor, plugin, ClasspathPluginsService.class.getClassLoader()));
        }
        // Lets plugins such as x-pack-core discover their ExtensiblePlugin extensions.
        loadExtensions(loaded);
        this.classpathPlugins = List.copyOf(loaded);
    }

    @Override
    protected final List<LoadedPlugin> plugins() {
        return classpathPlugins;
    }

    @Override
    public PluginsAndModules info() {
        return new PluginsAndModules(
            classpathPlugins.stream().map(LoadedPlugin::descriptor).map(PluginRuntimeInfo::new).toList(),
            List.of()
        );
    }

    /**
     * Every plugin shares the application class loader, so the stock
     * implementation (one ServiceLoader-style scan per plugin) would return
     * each provider once per plugin. Scan once and keep one instance per class.
     */
    @Override
    public <T> List<? extends T> loadServiceProviders(Class<T> service) {
        Map<Class<?>, T> result = new LinkedHashMap<>();
        List<Class<? extends T>> classes = new ArrayList<>();
        SPIClassIterator.get(service, ClasspathPluginsService.class.getClassLoader()).forEachRemaining(classes::add);
        for (Class<? extends T> clazz : classes) {
            if (result.containsKey(clazz)) {
                continue;
            }
            Plugin owner = null;
            boolean usable = false;
            for (Constructor<?> c : clazz.getConstructors()) {
                usable |= c.getParameterCount() == 0;
            }
            for (LoadedPlugin plugin : classpathPlugins) {
                if (usable == false && acceptsPlugin(clazz, plugin.instance())) {
                    owner = plugin.instance();
                    usable = true;
                }
            }
            if (usable == false) {
                // A provider that belongs to a plugin that is not loaded here.
                continue;
            }
            if (owner == null && classpathPlugins.isEmpty() == false) {
                owner = classpathPlugins.get(0).instance();
            }
            T instance = createExtension(clazz, service, owner);
            result.put(clazz, instance);
        }
        return List.copyOf(result.values());
    }

    private static boolean acceptsPlugin(Class<?> clazz, Plugin plugin) {
        for (Constructor<?> c : clazz.getConstructors()) {
            if (c.getParameterCount() == 1 && c.getParameterTypes()[0].isAssignableFrom(plugin.getClass())) {
                return true;
            }
        }
        return false;
    }
}
