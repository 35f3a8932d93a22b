package kibana

// The dashboards. Field names are those sink/ecs writes; TestFieldsInMapping
// holds every one against the mapping `kubesift setup es` installs on the
// real Elasticsearch, and the panels' searches are run there on the bundled
// scenario (test/integration TestKibanaPanelsHaveData).

// Field names used by more than one dashboard.
const (
	fCluster   = "orchestrator.cluster.name"
	fNamespace = "orchestrator.namespace"
	fUser      = "user.name"
	fSeverity  = "kubesift.alert.severity"
	fRule      = "rule.id"

	fVerb        = "kubernetes.audit.verb"
	fResource    = "kubernetes.audit.objectRef.resource"
	fSubresource = "kubernetes.audit.objectRef.subresource"
	fObjNS       = "kubernetes.audit.objectRef.namespace"
	fObjName     = "kubernetes.audit.objectRef.name"
	fCode        = "kubernetes.audit.responseStatus.code"

	fEvType    = "kubernetes.event.type"
	fReason    = "kubernetes.event.reason"
	fInvKind   = "kubernetes.event.involved_object.kind"
	fInvName   = "kubernetes.event.involved_object.name"
	fComponent = "kubernetes.event.source.component"

	fFinding = "kubesift.finding."
	fScore   = "kubesift.posture_score."
)

// controls returns the cluster, namespace and user controls on v (user from
// userField, which differs per data view).
func controls(v View, userField, userTitle string) []Control {
	return []Control{
		{Field: fCluster, Title: "Cluster", View: v},
		{Field: fNamespace, Title: "Namespace", View: v},
		{Field: userField, Title: userTitle, View: v},
	}
}

var writeVerbs = []string{"create", "update", "patch", "delete", "deletecollection"}

// Dashboards returns kubesift's dashboards, in the order Kibana lists them
// after import.
func Dashboards() []Dashboard {
	return []Dashboard{overview(), audit(), events(), detections(), posture()}
}

func overview() Dashboard {
	return Dashboard{
		ID: "overview", Title: "[kubesift] Overview",
		Description: "Alerts by severity, rule and MITRE tactic, the clusters reporting and the records each source delivers.",
		Controls:    controls(ViewAlerts, fUser, "User"),
		Panels: []Panel{
			{ID: "overview-alerts-count", Title: "Alerts", View: ViewAlerts, Vis: Metric,
				Description: "Alerts raised in the time range, and the rules that raised them.",
				Metrics:     []Agg{CountOf(), DistinctOf(fRule, "Rules")}, W: 12},
			{ID: "overview-alerts-over-time", Title: "Alerts over time by severity", View: ViewAlerts, Vis: Bar,
				Description: "Alerts the processor raised, stacked by severity.",
				Buckets:     []Agg{OverTime(), By(fSeverity, "Severity", 5)}, W: 36},
			{ID: "overview-alerts-by-rule", Title: "Alerts by rule", View: ViewAlerts, Vis: Table,
				Description: "Alerts per rule in the time range, most frequent first; kubesift-deadman is a cluster that stopped reporting.",
				Buckets:     []Agg{By(fRule, "Rule", 20), By(fSeverity, "Severity", 5)}},
			{ID: "overview-alerts-by-tactic", Title: "Alerts by MITRE ATT&CK tactic", View: ViewAlerts, Vis: Pie,
				Description: "Alerts of rules mapped to MITRE ATT&CK, by tactic.",
				Buckets:     []Agg{By("threat.tactic.name", "Tactic", 14)}},
			{ID: "overview-clusters", Title: "Clusters reporting", View: ViewRecords, Vis: Table,
				Description: "Each cluster's last audit record or Event, oldest first: a cluster at the top whose last record is old has stopped reporting (the notifier's deadman raises kubesift-deadman for it).",
				Metrics:     []Agg{MaxOf("@timestamp", "Last record"), CountOf()},
				Buckets:     []Agg{{Kind: Terms, Field: fCluster, Label: "Cluster", Size: 50, Asc: true}}},
			{ID: "overview-records-per-source", Title: "Records per source", View: ViewRecords, Vis: Bar,
				Description: "Audit records and Events written to Elasticsearch, by source.",
				Buckets:     []Agg{OverTime(), By("kubesift.record.source", "Source", 5)}},
		},
	}
}

func audit() Dashboard {
	return Dashboard{
		ID: "audit", Title: "[kubesift] Audit activity",
		Description: "Who did what to which resources through the API server: verbs, resources, users, user agents, source IPs, denials, exec, Secret reads, RBAC changes, anonymous and impersonated requests.",
		Controls:    controls(ViewAudit, fUser, "User"),
		Panels: []Panel{
			{ID: "audit-verbs-over-time", Title: "Requests over time by verb", View: ViewAudit, Vis: Bar,
				Description: "API requests per verb.",
				Buckets:     []Agg{OverTime(), By(fVerb, "Verb", 10)}, W: 48},
			{ID: "audit-by-verb", Title: "Requests by verb", View: ViewAudit, Vis: Pie,
				Description: "Share of each verb in the time range.",
				Buckets:     []Agg{By(fVerb, "Verb", 10)}, W: 16},
			{ID: "audit-by-resource", Title: "Requests by resource", View: ViewAudit, Vis: Table,
				Description: "Resources most requested.",
				Buckets:     []Agg{By(fResource, "Resource", 20)}, W: 16},
			{ID: "audit-by-user", Title: "Requests by user", View: ViewAudit, Vis: Table,
				Description: "Users and service accounts by number of requests.",
				Buckets:     []Agg{By(fUser, "User", 20)}, W: 16},
			{ID: "audit-by-user-agent", Title: "Requests by user agent", View: ViewAudit, Vis: Table,
				Description: "Clients by user agent: an unfamiliar one (curl, a custom tool) stands out.",
				Buckets:     []Agg{By("user_agent.original", "User agent", 20)}},
			{ID: "audit-by-source-ip", Title: "Requests by source IP", View: ViewAudit, Vis: Table,
				Description: "Client addresses (the request's origin: the first of its source IPs, or the connection's own when that is public), with the users seen from each.",
				Metrics:     []Agg{CountOf(), DistinctOf(fUser, "Users")},
				Buckets:     []Agg{By("source.ip", "Source IP", 20)}},
			{ID: "audit-public-sources", Title: "Requests from public addresses", View: ViewAudit, Vis: Table,
				Query:       []Clause{Is("kubesift.source.class", "public")},
				Description: "Requests whose origin is a public address, by address and user: a service account or node here is a credential used outside the cluster. The network lists an address is on are in each document's kubesift.source.lists (a row split by them would vanish for addresses on no list).",
				Buckets:     []Agg{By("source.ip", "Source IP", 20), By(fUser, "User", 10)}},
			{ID: "audit-denied", Title: "Denied requests", View: ViewAudit, Vis: Table,
				Query:       []Clause{Is("event.outcome", "failure")},
				Description: "Requests refused by authentication, authorization or admission (event.outcome failure), by user and response code.",
				Buckets:     []Agg{By(fUser, "User", 20), By(fCode, "Code", 5)}},
			{ID: "audit-exec", Title: "exec, attach and port-forward", View: ViewAudit, Vis: Table,
				Query:       []Clause{Is(fSubresource, "exec", "attach", "portforward")},
				Description: "Interactive access into pods, by user, subresource and pod.",
				Buckets:     []Agg{By(fUser, "User", 20), By(fSubresource, "Subresource", 3), By(fObjName, "Pod", 10)}},
			{ID: "audit-secret-reads", Title: "Secret reads", View: ViewAudit, Vis: Table,
				Query:       []Clause{Is(fResource, "secrets"), Is(fVerb, "get", "list", "watch")},
				Description: "get, list and watch of Secrets, by user and namespace.",
				Buckets:     []Agg{By(fUser, "User", 20), By(fObjNS, "Namespace", 10)}},
			{ID: "audit-rbac-changes", Title: "RBAC changes", View: ViewAudit, Vis: Table,
				Query:       []Clause{Is("kubernetes.audit.objectRef.apiGroup", "rbac.authorization.k8s.io"), Is(fVerb, writeVerbs...)},
				Description: "Roles, ClusterRoles and their bindings created, changed or deleted, by user.",
				Buckets:     []Agg{By(fUser, "User", 20), By(fVerb, "Verb", 5), By(fResource, "Resource", 4)}},
			{ID: "audit-anonymous", Title: "Anonymous requests", View: ViewAudit, Vis: Table,
				Query:       []Clause{Is(fUser, "system:anonymous")},
				Description: "Requests as system:anonymous, by path and response code: a 2xx here is data served without credentials.",
				Buckets:     []Agg{By("kubernetes.audit.requestURI", "Request URI", 20), By(fCode, "Code", 5)}},
			{ID: "audit-impersonated", Title: "Impersonated requests", View: ViewAudit, Vis: Table,
				Query:       []Clause{Has("kubernetes.audit.impersonatedUser.username")},
				Description: "Requests made as another user (Impersonate-User), by who impersonated whom.",
				Buckets:     []Agg{By(fUser, "User", 20), By("kubernetes.audit.impersonatedUser.username", "As user", 10)}},
			{ID: "audit-trail", Title: "Audit trail", View: ViewAudit, Vis: Search, W: 48, H: 20,
				Description: "The raw audit records, newest first.",
				Columns:     []string{fCluster, fUser, fVerb, fResource, fObjNS, fObjName, fCode, "source.ip", "user_agent.original"}},
		},
	}
}

func events() Dashboard {
	return Dashboard{
		ID: "events", Title: "[kubesift] Events",
		Description: "Kubernetes Events: Warnings by reason, the objects and namespaces they concern, evictions, OOM kills, image pull and scheduling failures, node events.",
		// Events carry no user: the third control is the reporting component.
		Controls: controls(ViewEvents, fComponent, "Component"),
		Panels: []Panel{
			{ID: "events-warnings-over-time", Title: "Warnings over time by reason", View: ViewEvents, Vis: Bar,
				Query:       []Clause{Is(fEvType, "Warning")},
				Description: "Warning Events by reason.",
				Buckets:     []Agg{OverTime(), By(fReason, "Reason", 10)}, W: 48},
			{ID: "events-top-objects", Title: "Top involved objects", View: ViewEvents, Vis: Table,
				Query:       []Clause{Is(fEvType, "Warning")},
				Description: "Objects with the most Warnings.",
				Buckets:     []Agg{By(fInvKind, "Kind", 5), By(fInvName, "Name", 20)}},
			{ID: "events-top-namespaces", Title: "Top namespaces", View: ViewEvents, Vis: Pie,
				Query:       []Clause{Is(fEvType, "Warning")},
				Description: "Namespaces with the most Warnings (cluster-scoped objects such as Nodes have none).",
				Buckets:     []Agg{By(fNamespace, "Namespace", 10)}},
			{ID: "events-evictions", Title: "Evictions", View: ViewEvents, Vis: Table,
				Query:       []Clause{Is(fReason, "Evicted", "Preempting", "TaintManagerEviction")},
				Description: "Pods evicted by the kubelet (node pressure), preempted or evicted for taints.",
				Buckets:     []Agg{By(fNamespace, "Namespace", 10), By(fInvName, "Pod", 20)}},
			{ID: "events-oom", Title: "OOM kills", View: ViewEvents, Vis: Table,
				Query:       []Clause{Is(fReason, "OOMKilling", "SystemOOM", "OOMKilled")},
				Description: "Out-of-memory kills reported by nodes and containers.",
				Buckets:     []Agg{By(fInvKind, "Kind", 3), By(fInvName, "Object", 20), By(fReason, "Reason", 3)}},
			{ID: "events-image-pull", Title: "Image pull failures", View: ViewEvents, Vis: Table,
				Query: []Clause{AnyOf(Is(fReason, "ErrImagePull", "ImagePullBackOff", "InspectFailed", "ErrImageNeverPull"),
					Phrase("kubernetes.event.message", "pull image"))},
				Description: "Images that could not be pulled, by pod and reason.",
				Buckets:     []Agg{By(fInvName, "Pod", 20), By(fReason, "Reason", 5)}},
			{ID: "events-scheduling", Title: "Scheduling failures", View: ViewEvents, Vis: Table,
				Query:       []Clause{Is(fReason, "FailedScheduling")},
				Description: "Pods the scheduler could not place, by namespace and pod.",
				Buckets:     []Agg{By(fNamespace, "Namespace", 10), By(fInvName, "Pod", 20)}},
			{ID: "events-nodes", Title: "Node events", View: ViewEvents, Vis: Table,
				Query:       []Clause{Is(fInvKind, "Node")},
				Description: "Events about Nodes (NotReady, pressure, reboots, OOM), by node and reason.",
				Buckets:     []Agg{By(fInvName, "Node", 20), By(fReason, "Reason", 10)}},
			{ID: "events-list", Title: "Events", View: ViewEvents, Vis: Search, W: 48, H: 20,
				Description: "The Events, newest first.",
				Columns:     []string{fCluster, fEvType, fReason, fInvKind, fNamespace, fInvName, "message"}},
		},
	}
}

func detections() Dashboard {
	return Dashboard{
		ID: "detections", Title: "[kubesift] Detections",
		Description: "kubesift's alerts: who did what, per rule, with MITRE ATT&CK techniques and the state of each notification.",
		Controls:    controls(ViewAlerts, fUser, "User"),
		Panels: []Panel{
			{ID: "detections-alerts", Title: "Alerts", View: ViewAlerts, Vis: Search, W: 48, H: 20,
				Description: "Every alert, newest first; the record id opens the record that raised it in Discover.",
				Columns: []string{fSeverity, "rule.name", fUser, fCluster, fNamespace, "orchestrator.resource.type",
					"orchestrator.resource.name", "threat.technique.id", "kubesift.delivery.state", "kubesift.alert.record_id"}},
			{ID: "detections-per-rule", Title: "Alerts per rule", View: ViewAlerts, Vis: Table,
				Description: "Alert counts per rule with their severity and the users they concern.",
				Metrics:     []Agg{CountOf(), DistinctOf(fUser, "Users")},
				Buckets:     []Agg{By(fRule, "Rule", 50), By(fSeverity, "Severity", 5)}},
			{ID: "detections-techniques", Title: "Alerts by MITRE ATT&CK technique", View: ViewAlerts, Vis: Table,
				Description: "Techniques the alerts map to.",
				Buckets:     []Agg{By("threat.technique.id", "Technique", 20)}, W: 12},
			{ID: "detections-delivery", Title: "Notification delivery", View: ViewAlerts, Vis: Pie,
				Description: "kubesift.delivery.state of the alerts: pending until the notifier delivers (or suppresses) each one.",
				Buckets:     []Agg{By("kubesift.delivery.state", "Delivery", 10)}, W: 12},
		},
	}
}

func posture() Dashboard {
	return Dashboard{
		ID: "posture", Title: "[kubesift] Posture",
		Description: "Posture scores per cluster and namespace, failing checks by CIS control, open findings, and findings opened and resolved over time.",
		Controls:    controls(ViewFindings, fFinding+"actor.user", "Changed by"),
		Panels: []Panel{
			{ID: "posture-score-cluster", Title: "Posture score per cluster", View: ViewScores, Vis: Line,
				Query:       []Clause{Is(fScore+"scope", "cluster")},
				Description: "Weighted share of passed checks (percent) per cluster over time.",
				Metrics:     []Agg{AvgOf(fScore+"percent", "Score %")},
				Buckets:     []Agg{OverTime(), By(fCluster, "Cluster", 10)}},
			{ID: "posture-score-namespace", Title: "Posture score per namespace", View: ViewScores, Vis: Table,
				Query:       []Clause{Is(fScore+"scope", "namespace")},
				Description: "Each namespace's latest score and number of failed checks.",
				Metrics:     []Agg{LatestOf(fScore+"percent", "Score %"), LatestOf(fScore+"failed", "Failed checks")},
				Buckets:     []Agg{{Kind: Terms, Field: fCluster, Label: "Cluster", Size: 10, ByKey: true}, {Kind: Terms, Field: fNamespace, Label: "Namespace", Size: 50, ByKey: true}}},
			{ID: "posture-failing-cis", Title: "Failing checks by CIS section", View: ViewFindings, Vis: Table,
				Query:       []Clause{Is(fFinding+"state", "open", "reopened")},
				Description: "Open findings per CIS Kubernetes Benchmark section (5.2 for 5.2.2), control and check.",
				Buckets:     []Agg{By(fFinding+"cis_section", "CIS section", 20), By(fFinding+"cis", "CIS control", 30), By(fFinding+"check_id", "Check", 10)}},
			{ID: "posture-open-findings", Title: "Open findings", View: ViewFindings, Vis: Search, W: 48, H: 20,
				Query:       []Clause{Is(fFinding+"state", "open", "reopened")},
				Description: "Findings open now, with the object, the check and who caused them.",
				Columns: []string{fFinding + "severity", fFinding + "check_id", fCluster, fNamespace, fFinding + "object.kind",
					fFinding + "object.name", fFinding + "message", fFinding + "actor.user", fFinding + "opened_at"}},
			{ID: "posture-transitions", Title: "Findings opened vs resolved", View: ViewTransitions, Vis: Bar,
				Description: "Finding transitions over time: open, reopened and resolved.",
				Buckets:     []Agg{OverTime(), By(fFinding+"state", "Transition", 3)}, W: 48},
		},
	}
}
