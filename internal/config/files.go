package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FileKind is what a file named in the configuration holds, and so how
// CheckFiles checks it.
type FileKind int

// The kinds of files the configuration names.
const (
	// FileSecret is a credential (*_file of a secret): it exists, is
	// readable and not empty. Its content is never shown.
	FileSecret FileKind = iota + 1
	// FileCert is a PEM certificate (chain); with the key of the same
	// section (cert_file and key_file, tls_cert_file and tls_key_file)
	// the two must be a matching pair.
	FileCert
	// FileKey is a PEM private key, checked with its certificate.
	FileKey
	// FileCABundle holds PEM CA certificates, at least one.
	FileCABundle
	// FileKubeconfig is a kubeconfig file.
	FileKubeconfig
	// FileRules is a rule file or directory; package rules compiles them
	// (config sits below it), so CheckFiles leaves them to its caller.
	FileRules
	// FileState is written by kubesift itself (tail positions, the spool
	// directory) and need not exist beforehand: not checked.
	FileState
	// FileInput is read as it appears (audit logs the API server writes):
	// not checked, a collector waits for it.
	FileInput
	// FileNetworkList is a list of CIDRs and addresses
	// (processor.network.lists[].files): every line parses.
	FileNetworkList
	// FileGeoIPCity and FileGeoIPASN are MaxMind-format databases of that
	// type (processor.network.geoip).
	FileGeoIPCity
	FileGeoIPASN
)

// fileFields classifies every configuration key that names a file or a
// directory, by its YAML key: the same key means the same kind in every
// section. TestEveryFileFieldIsClassified fails when a struct gains a
// *_file (or path, dir, kubeconfig) key missing here, so a new file is
// checked by `config validate` from the day it is added.
var fileFields = map[string]FileKind{
	"ca_file":            FileCABundle,
	"client_ca_file":     FileCABundle,
	"cert_file":          FileCert,
	"tls_cert_file":      FileCert,
	"key_file":           FileKey,
	"tls_key_file":       FileKey,
	"password_file":      FileSecret,
	"api_key_file":       FileSecret,
	"routing_key_file":   FileSecret,
	"auth_password_file": FileSecret,
	"bearer_token_file":  FileSecret,
	"token_file":         FileSecret,
	"url_file":           FileSecret,
	"secret_file":        FileSecret,
	"kubeconfig":         FileKubeconfig,
	"dirs":               FileRules,
	"positions_file":     FileState,
	"dir":                FileState,
	"paths":              FileInput,
	"files":              FileNetworkList,
	"city_db":            FileGeoIPCity,
	"asn_db":             FileGeoIPASN,
}

// FileRef is one file or directory the configuration names.
type FileRef struct {
	Field string // full path, e.g. kafka.tls.ca_file
	Kind  FileKind
	Path  string
}

// Files lists every file and directory c names (non-empty values of the
// keys in fileFields), in the order of the structs' fields.
func (c *Config) Files() []FileRef {
	var out []FileRef
	collectFiles(reflect.ValueOf(c).Elem(), "", &out)
	return out
}

func collectFiles(v reflect.Value, path string, out *[]FileRef) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			collectFiles(v.Elem(), path, out)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			collectFiles(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			p := joinPath(path, name)
			fv := v.Field(i)
			kind, isFile := fileFields[name]
			switch {
			case isFile && fv.Kind() == reflect.String && fv.String() != "":
				*out = append(*out, FileRef{Field: p, Kind: kind, Path: fv.String()})
			case isFile && fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
				for j := 0; j < fv.Len(); j++ {
					if s := fv.Index(j).String(); s != "" {
						*out = append(*out, FileRef{Field: fmt.Sprintf("%s[%d]", p, j), Kind: kind, Path: s})
					}
				}
			default:
				collectFiles(fv, p, out)
			}
		}
	}
}

// CheckFiles checks that every file c names exists and parses as its kind
// says: certificates and keys load as a matching pair, CA bundles hold
// certificates, secret files are readable and not empty, a kubeconfig is
// one. Rule files (FileRules) are left to the caller. Every problem is
// "field: problem naming the file", joined; a file's content is never in it.
func (c *Config) CheckFiles() error {
	refs := c.Files()
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	// A certificate and the key of the same section are checked together.
	keys := map[string]FileRef{}
	for _, r := range refs {
		if r.Kind == FileKey {
			keys[parentPath(r.Field)] = r
		}
	}
	for _, r := range refs {
		switch r.Kind {
		case FileSecret:
			if msg := checkSecretFile(r.Path); msg != "" {
				add(r.Field, "%s", msg)
			}
		case FileCABundle:
			if msg := checkCABundle(r.Path); msg != "" {
				add(r.Field, "%s", msg)
			}
		case FileKubeconfig:
			if msg := checkKubeconfig(r.Path); msg != "" {
				add(r.Field, "%s", msg)
			}
		case FileNetworkList, FileGeoIPCity, FileGeoIPASN:
			if err := checkNetworkFile(r); err != nil {
				add(r.Field, "%v", err)
			}
		case FileCert:
			key, paired := keys[parentPath(r.Field)]
			if !paired {
				if msg := checkCABundle(r.Path); msg != "" {
					add(r.Field, "%s", msg)
				}
				continue
			}
			delete(keys, parentPath(r.Field))
			_, certMsg := readFile(r.Path)
			_, keyMsg := readFile(key.Path)
			switch {
			case certMsg != "":
				add(r.Field, "%s", certMsg)
			case keyMsg != "":
				add(key.Field, "%s", keyMsg)
			default:
				if _, err := tls.LoadX509KeyPair(r.Path, key.Path); err != nil {
					// crypto/tls never puts key material in its errors.
					add(r.Field, "%s and %s: %v", r.Path, key.Path, err)
				}
			}
		}
	}
	// Keys without a certificate (validation reports the missing half):
	// at least they must be readable.
	for _, k := range keys {
		if msg := checkSecretFile(k.Path); msg != "" {
			add(k.Field, "%s", msg)
		}
	}
	return errors.Join(errs...)
}

// readFile reads a file named in the configuration, with a message that
// names it (the error of os.ReadFile does) and says nothing of its content.
func readFile(path string) ([]byte, string) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err.Error()
	}
	if st.IsDir() {
		return nil, path + " is a directory, not a file"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err.Error()
	}
	return b, ""
}

func checkSecretFile(path string) string {
	b, msg := readFile(path)
	if msg != "" {
		return msg
	}
	if strings.TrimSpace(string(b)) == "" {
		return path + " is empty"
	}
	return ""
}

func checkCABundle(path string) string {
	b, msg := readFile(path)
	if msg != "" {
		return msg
	}
	n := 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Sprintf("%s: certificate %d: %v", path, n+1, err)
		}
		n++
	}
	if n == 0 {
		return path + " holds no PEM certificate"
	}
	return ""
}

func checkKubeconfig(path string) string {
	b, msg := readFile(path)
	if msg != "" {
		return msg
	}
	var kc struct {
		Kind     string `yaml:"kind"`
		Clusters []any  `yaml:"clusters"`
	}
	// Only the shape is read: a kubeconfig holds credentials, and a
	// decoding error must not quote them.
	if err := yaml.Unmarshal(b, &kc); err != nil || kc.Kind != "Config" || len(kc.Clusters) == 0 {
		return path + " is not a kubeconfig (kind: Config with at least one cluster)"
	}
	return ""
}

// parentPath is the path of the section holding field.
func parentPath(field string) string {
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		return field[:i]
	}
	return ""
}
