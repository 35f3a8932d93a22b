package ecs

// The mappings of the documents this package builds. They are Go values
// (not JSON files) so that a test can hold documents and mappings against
// each other, and sink/elasticsearch installs exactly these as component
// templates. Every object is dynamic: false — a field kubesift does not map
// stays in _source but can never grow the mapping or conflict — except the
// few free-form places noted below.
//
// Types avoid what the test ground (and some managed clusters) lack: no
// match_only_text, wildcard or constant_keyword (mapper-extras); text and
// keyword instead.

// MappingVersion is stamped on the templates (version, _meta); bump it
// whenever a mapping below changes.
const MappingVersion = 2

func kw() map[string]any        { return map[string]any{"type": "keyword", "ignore_above": 1024} }
func txt() map[string]any       { return map[string]any{"type": "text"} }
func date() map[string]any      { return map[string]any{"type": "date"} }
func boolean() map[string]any   { return map[string]any{"type": "boolean"} }
func long() map[string]any      { return map[string]any{"type": "long"} }
func flattened() map[string]any { return leafMapping("flattened") }

// obj is an object with the given properties, dynamic: false.
func obj(props map[string]any) map[string]any {
	return map[string]any{"type": "object", "dynamic": false, "properties": props}
}

// BaseMappings are the ECS fields every kubesift document may carry.
func BaseMappings() map[string]any {
	return map[string]any{
		"dynamic": false,
		"properties": map[string]any{
			"@timestamp": date(),
			"message":    txt(),
			"tags":       kw(),
			"event": obj(map[string]any{
				"kind": kw(), "category": kw(), "type": kw(), "action": kw(), "outcome": kw(),
				"dataset": kw(), "id": kw(), "created": date(), "ingested": date(),
				"severity": long(), "risk_score": map[string]any{"type": "float"},
				// Never filled by kubesift (the record in Kafka is the
				// original), but mapped: prebuilt ES|QL rules KEEP it.
				"original": map[string]any{"type": "keyword", "index": false, "doc_values": false},
			}),
			"user": obj(map[string]any{
				"name": kw(), "id": kw(), "roles": kw(),
				"group": obj(map[string]any{"name": kw()}),
			}),
			"source": obj(map[string]any{
				"ip": map[string]any{"type": "ip"},
				"geo": obj(map[string]any{
					"continent_code": kw(), "continent_name": kw(), "country_iso_code": kw(), "country_name": kw(),
					"region_iso_code": kw(), "region_name": kw(), "city_name": kw(),
					"location": map[string]any{"type": "geo_point"},
				}),
				"as": obj(map[string]any{"number": long(), "organization": obj(map[string]any{"name": kw()})}),
			}),
			"user_agent": obj(map[string]any{"original": kw()}),
			"orchestrator": obj(map[string]any{
				"type":      kw(),
				"cluster":   obj(map[string]any{"name": kw(), "id": kw()}),
				"namespace": kw(),
				"resource":  obj(map[string]any{"type": kw(), "name": kw()}),
			}),
			"data_stream": obj(map[string]any{"type": kw(), "dataset": kw(), "namespace": kw()}),
			"kubesift": obj(map[string]any{
				"record": obj(map[string]any{
					"id": kw(), "source": kw(), "api_version": kw(), "key": kw(), "observed_time": date(),
					"truncated": boolean(), "redacted": kw(), "body_dropped": kw(), "dropped_fields": kw(),
				}),
				// The origin's class and network lists (internal/netorigin).
				"source": obj(map[string]any{"class": kw(), "lists": kw()}),
			}),
		},
	}
}

func auditUserMapping() map[string]any {
	return obj(map[string]any{
		"username": kw(), "uid": kw(),
		"groups": txt(), // text, as the integration maps it
		"extra":  flattened(),
	})
}

// AuditMappings map kubernetes.audit.* with the integration's names and
// types (elastic/integrations packages/kubernetes/data_stream/audit_logs/
// fields/fields.yml). Deviations: annotations are keyword, not text (Elastic's
// new_terms rules aggregate on the decision, which text cannot do); user.extra
// is flattened (its names contain dots).
func AuditMappings() map[string]any {
	return map[string]any{
		"dynamic_templates": []any{
			// Annotation names arrive with "." replaced by "_"; each becomes
			// a keyword field (a handful per API server and admission chain).
			map[string]any{"kubesift_audit_annotations": map[string]any{
				"path_match": "kubernetes.audit.annotations.*",
				"mapping":    kw(),
			}},
		},
		"properties": map[string]any{
			"kubernetes": obj(map[string]any{
				"audit": obj(map[string]any{
					"apiVersion": kw(), "kind": kw(), "level": kw(), "auditID": kw(), "stage": kw(),
					"requestURI": kw(), "verb": kw(),
					"user":             auditUserMapping(),
					"impersonatedUser": auditUserMapping(),
					"sourceIPs":        txt(),
					"userAgent":        kw(),
					"objectRef": obj(map[string]any{
						"resource": kw(), "namespace": kw(), "name": kw(), "uid": kw(), "apiGroup": kw(),
						"apiVersion": kw(), "resourceVersion": kw(), "subresource": kw(),
					}),
					"responseStatus": obj(map[string]any{
						"code": map[string]any{"type": "integer"}, "status": kw(), "message": txt(), "reason": kw(),
					}),
					"requestObject":            obj(BodyProperties()),
					"responseObject":           obj(BodyProperties()),
					"requestReceivedTimestamp": date(),
					"stageTimestamp":           date(),
					"annotations": map[string]any{
						"type": "object", "dynamic": true,
						"properties": map[string]any{
							"authorization_k8s_io/decision": kw(),
							"authorization_k8s_io/reason":   kw(),
						},
					},
				}),
			}),
		},
	}
}

// EventsMappings map kubernetes.event.*.
func EventsMappings() map[string]any {
	ref := func() map[string]any {
		return obj(map[string]any{
			"api_version": kw(), "kind": kw(), "name": kw(), "namespace": kw(), "uid": kw(),
			"resource_version": kw(), "field_path": kw(),
		})
	}
	return map[string]any{
		"properties": map[string]any{
			"kubernetes": obj(map[string]any{
				"event": obj(map[string]any{
					"api_version": kw(), "type": kw(), "reason": kw(), "action": kw(), "message": txt(),
					"count":           long(),
					"source":          obj(map[string]any{"component": kw(), "host": kw()}),
					"involved_object": ref(),
					"related":         ref(),
					"metadata": obj(map[string]any{
						"name": kw(), "namespace": kw(), "uid": kw(), "resource_version": kw(), "generate_name": kw(),
						"timestamp_created": date(), "labels": flattened(), "annotations": flattened(),
					}),
					"timestamp": obj(map[string]any{"first_occurrence": date(), "last_occurrence": date()}),
				}),
			}),
		},
	}
}

// PostureMappings map kubernetes.object.* (object snapshots of posture
// scans); spec and status are flattened: their shape depends on the kind.
func PostureMappings() map[string]any {
	return map[string]any{
		"properties": map[string]any{
			"kubernetes": obj(map[string]any{
				"object": obj(map[string]any{
					"apiVersion": kw(), "kind": kw(),
					"metadata": obj(map[string]any{
						"name": kw(), "namespace": kw(), "uid": kw(), "resourceVersion": kw(),
						"creationTimestamp": date(), "labels": flattened(), "annotations": flattened(),
					}),
					"spec":   flattened(),
					"status": flattened(),
				}),
			}),
		},
	}
}

// AlertsMappings map the alert fields. kubesift.delivery is dynamic so the
// notifier can record more about deliveries without a template change.
func AlertsMappings() map[string]any {
	idName := func() map[string]any { return obj(map[string]any{"id": kw(), "name": kw()}) }
	return map[string]any{
		"properties": map[string]any{
			"rule": obj(map[string]any{"id": kw(), "name": kw()}),
			"threat": obj(map[string]any{
				"framework": kw(), "tactic": idName(), "technique": idName(),
			}),
			"kubesift": obj(map[string]any{
				"alert": obj(map[string]any{
					"severity": kw(), "record_id": kw(), "source": kw(), "group_key": kw(),
					"count": long(), "message": txt(), "verb": kw(), "audit_id": kw(),
				}),
				"delivery": map[string]any{
					"type": "object", "dynamic": true,
					"properties": map[string]any{"state": kw(), "updated": date()},
				},
			}),
		},
	}
}

// FindingsMappings map kubesift.finding.*, shared by the findings state
// index and the transitions data stream: keyword for what Kibana filters
// and aggregates on (ids, check, cis, severity, state, object), text for
// what people read (message, remediation; message also as a keyword
// subfield for exact matches), dates for the lifecycle.
func FindingsMappings() map[string]any {
	return map[string]any{
		"properties": map[string]any{
			"kubesift": obj(map[string]any{
				"finding": obj(map[string]any{
					"id": kw(), "state": kw(), "check_id": kw(), "title": txtKw(), "cis": kw(), "cis_section": kw(), "cis_version": kw(),
					"severity": kw(), "mitre": obj(map[string]any{"tactics": kw(), "techniques": kw()}),
					"object":      obj(map[string]any{"kind": kw(), "namespace": kw(), "name": kw(), "uid": kw()}),
					"message":     txtKw(),
					"remediation": txt(),
					// A string in the documents, a keyword here: a
					// resourceVersion is compared as an identity; ordering uses
					// version.
					"observed_resource_version": kw(), "version": long(),
					"first_seen": date(), "opened_at": date(), "resolved_at": date(), "last_transition_at": date(),
					"actor": obj(map[string]any{
						"user": kw(), "verb": kw(), "groups": kw(), "user_agent": kw(), "source_ip": map[string]any{"type": "ip"},
						"audit_id": kw(), "audit_index": kw(), "audit_doc_id": kw(), "pre_existing": boolean(),
					}),
				}),
			}),
		},
	}
}

// ScoresMappings map kubesift.posture_score.*.
func ScoresMappings() map[string]any {
	return map[string]any{
		"properties": map[string]any{
			"kubesift": obj(map[string]any{
				"posture_score": obj(map[string]any{
					"scope": kw(), "passed": long(), "failed": long(), "passed_weight": long(), "weight": long(),
					"percent": map[string]any{"type": "float"},
				}),
			}),
		},
	}
}

// txtKw is text with a keyword subfield: searchable by words, and exact
// and aggregatable as .keyword.
func txtKw() map[string]any {
	return map[string]any{"type": "text", "fields": map[string]any{"keyword": kw()}}
}

// MergeMappings deep-merges mappings the way Elasticsearch composes
// component templates (later wins on leaves), for the alerts index whose
// mapping Setup also applies directly.
func MergeMappings(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		mergeInto(out, m)
	}
	return out
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		sv, sIsMap := v.(map[string]any)
		dv, dIsMap := dst[k].(map[string]any)
		if sIsMap && dIsMap {
			mergeInto(dv, sv)
			continue
		}
		if sIsMap {
			cp := map[string]any{}
			mergeInto(cp, sv)
			dst[k] = cp
			continue
		}
		if sl, ok := v.([]any); ok {
			if dl, ok := dst[k].([]any); ok {
				dst[k] = append(append([]any{}, dl...), sl...)
				continue
			}
		}
		dst[k] = v
	}
}
