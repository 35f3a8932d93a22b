package record

import (
	"encoding/json"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// gkeEntry is the part of a Google Cloud audit log entry (the form GKE exports
// Kubernetes audit logs in) that maps onto an audit.k8s.io Event.
type gkeEntry struct {
	InsertID  string            `json:"insertId"`
	Timestamp time.Time         `json:"timestamp"`
	Labels    map[string]string `json:"labels"`
	Operation struct {
		ID    string `json:"id"`
		First bool   `json:"first"`
		Last  bool   `json:"last"`
	} `json:"operation"`
	ProtoPayload struct {
		AuthenticationInfo struct {
			PrincipalEmail string `json:"principalEmail"`
		} `json:"authenticationInfo"`
		MethodName      string `json:"methodName"`
		ResourceName    string `json:"resourceName"`
		RequestMetadata struct {
			CallerIP                string `json:"callerIp"`
			CallerSuppliedUserAgent string `json:"callerSuppliedUserAgent"`
		} `json:"requestMetadata"`
		Status struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
		Request  json.RawMessage `json:"request"`
		Response json.RawMessage `json:"response"`
	} `json:"protoPayload"`
}

// fromGKE converts a GKE Cloud Audit Log entry into an audit event. The audit
// ID is the operation id (shared by all entries of one request) or the insert
// id; the stage is ResponseComplete, the only stage GKE exports.
func fromGKE(data []byte) (*auditv1.Event, error) {
	var e gkeEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, jsonError("", err)
	}
	pp := &e.ProtoPayload
	if pp.MethodName == "" {
		return nil, &FieldError{Field: "protoPayload.methodName", Msg: "missing"}
	}
	id := e.Operation.ID
	if id == "" {
		id = e.InsertID
	}
	if id == "" {
		return nil, &FieldError{Field: "insertId", Msg: "missing (needed for a stable record id)"}
	}
	ev := &auditv1.Event{
		TypeMeta:  metav1.TypeMeta{Kind: "Event", APIVersion: APIAuditV1},
		Level:     auditv1.LevelMetadata,
		AuditID:   types.UID(id),
		Stage:     auditv1.StageResponseComplete,
		Verb:      gkeVerb(pp.MethodName),
		User:      authnv1.UserInfo{Username: pp.AuthenticationInfo.PrincipalEmail},
		UserAgent: pp.RequestMetadata.CallerSuppliedUserAgent,
		ResponseStatus: &metav1.Status{
			Code:    int32(grpcToHTTP(pp.Status.Code)),
			Message: pp.Status.Message,
		},
		RequestReceivedTimestamp: metav1.NewMicroTime(e.Timestamp),
		StageTimestamp:           metav1.NewMicroTime(e.Timestamp),
		Annotations:              e.Labels,
	}
	if pp.RequestMetadata.CallerIP != "" {
		ev.SourceIPs = []string{pp.RequestMetadata.CallerIP}
	}
	ev.ObjectRef, ev.RequestURI = gkeResource(pp.ResourceName)
	if len(pp.Request) > 0 && string(pp.Request) != "null" {
		ev.Level = auditv1.LevelRequest
		ev.RequestObject = &runtime.Unknown{Raw: pp.Request, ContentType: runtime.ContentTypeJSON}
	}
	if len(pp.Response) > 0 && string(pp.Response) != "null" {
		ev.Level = auditv1.LevelRequestResponse
		ev.ResponseObject = &runtime.Unknown{Raw: pp.Response, ContentType: runtime.ContentTypeJSON}
	}
	return ev, nil
}

// gkeVerb maps "io.k8s.core.v1.pods.create" or "io.k8s.get" to the verb.
func gkeVerb(method string) string {
	return method[strings.LastIndexByte(method, '.')+1:]
}

// gkeResource parses "core/v1/namespaces/ns/pods/name/exec" into an object
// reference; a resource name without a group/version ("readyz") is a
// non-resource URL.
func gkeResource(name string) (*auditv1.ObjectReference, string) {
	parts := strings.Split(strings.Trim(name, "/"), "/")
	if len(parts) < 3 {
		return nil, "/" + strings.Trim(name, "/")
	}
	ref := &auditv1.ObjectReference{APIVersion: parts[1]}
	if parts[0] != "core" {
		ref.APIGroup = parts[0]
	}
	rest := parts[2:]
	if len(rest) >= 2 && rest[0] == "namespaces" && len(rest) != 2 {
		ref.Namespace, rest = rest[1], rest[2:]
	}
	if len(rest) > 0 {
		ref.Resource = rest[0]
	}
	if len(rest) > 1 {
		ref.Name = rest[1]
	}
	if len(rest) > 2 {
		ref.Subresource = rest[2]
	}
	prefix := "/apis/" + ref.APIGroup + "/" + ref.APIVersion
	if ref.APIGroup == "" {
		prefix = "/api/" + ref.APIVersion
	}
	return ref, prefix + "/" + strings.Join(parts[2:], "/")
}

// grpcToHTTP maps the google.rpc.Code in a Cloud Audit Log status to the HTTP
// status the API server answered with.
func grpcToHTTP(code int) int {
	switch code {
	case 0:
		return 200
	case 3, 9, 11:
		return 400
	case 16:
		return 401
	case 7:
		return 403
	case 5:
		return 404
	case 6, 10:
		return 409
	case 8:
		return 429
	case 12:
		return 501
	case 14:
		return 503
	case 4:
		return 504
	}
	return 500
}
