/*
Copyright 2026 The together-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package webhook

import (
	"fmt"
	"path/filepath"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// TLSFiles names the certificate and key the events endpoint serves HTTPS
// with, typically the tls.crt and tls.key of a Secret (written by
// cert-manager or by hand) mounted as a volume. The files are re-read when
// they change, so a renewed certificate is served without a restart.
type TLSFiles struct {
	// Dir holds the files; empty means plain HTTP.
	Dir string
	// CertName and KeyName are file names in Dir; default tls.crt and tls.key.
	CertName, KeyName string
	// WatchInterval is how often the files are polled besides file-system
	// notifications (which miss some Secret volume updates); default 10s.
	WatchInterval time.Duration
}

func (f TLSFiles) enabled() bool { return f.Dir != "" }

func (f TLSFiles) paths() (cert, key string) {
	cert, key = f.CertName, f.KeyName
	if cert == "" {
		cert = "tls.crt"
	}
	if key == "" {
		key = "tls.key"
	}
	return filepath.Join(f.Dir, cert), filepath.Join(f.Dir, key)
}

// watcher loads the pair once (so that a missing or bad file fails the start
// with a message naming it) and returns the watcher that keeps it current.
func (f TLSFiles) watcher() (*certwatcher.CertWatcher, error) {
	cert, key := f.paths()
	w, err := certwatcher.New(cert, key)
	if err != nil {
		return nil, fmt.Errorf("loading the events endpoint's TLS certificate %s and key %s: %w", cert, key, err)
	}
	if f.WatchInterval > 0 {
		w = w.WithWatchInterval(f.WatchInterval)
	}
	return w, nil
}
