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

package togethersim

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// Accounts. On Together an API key belongs to one account (a project): it
// lists and reads only the fine-tunes and batches made under that account,
// and another account's job ID is answered as unknown. Tests of per-tenant
// credentials need that to tell which key a resource used, so the
// simulator keeps one default account (Options.APIKey, or any token when
// that is empty) and any number of others added with AddAccount. Fine-tunes
// and batches belong to the account that created them (or the one a preload
// names); files, endpoints, models and webhook registrations stay shared.

// AddAccount makes key valid as its own account, apart from the default
// one and from each other.
func (s *Server) AddAccount(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.accounts, key) {
		s.accounts = append(s.accounts, key)
	}
}

// accountOf returns the account a request acts as: an added account's key,
// or "" for the default account.
func (s *Server) accountOf(r *http.Request) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accountOfLocked(bearer(r))
}

func (s *Server) accountOfLocked(tok string) string {
	for _, k := range s.accounts {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(k)) == 1 {
			return k
		}
	}
	return ""
}

// CountCallsAs counts answered requests with this method and exact path
// made with key ("" for the default account), so a test can tell which
// account a client used without trusting the client.
func (s *Server) CountCallsAs(key, method, path string) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Method == method && c.Path == path && c.account == key {
			n++
		}
	}
	return n
}

// bearer is the request's bearer token.
func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return tok
}
