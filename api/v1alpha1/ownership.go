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

package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// What the operator owns on Together, and what deleting a resource does to
// it. A resource either submitted its remote work (spec.training,
// spec.input) or adopted work that already existed (spec.jobID,
// spec.batchID); only the first is ever cancelled.

// Adopted reports whether the resource follows a job it did not submit.
func (ft *TogetherFineTune) Adopted() bool { return ft.Spec.JobID != "" }

// Adopted reports whether the resource follows a batch it did not submit.
func (b *TogetherBatch) Adopted() bool { return b.Spec.BatchID != "" }

// EffectiveDeletionPolicy is what deleting the resource does:
// spec.deletionPolicy when set, otherwise Cancel for a job this resource
// submits and Retain for an adopted one. The CRD has no default, so that
// the default can depend on how the work came to be.
func (ft *TogetherFineTune) EffectiveDeletionPolicy() DeletionPolicy {
	return effectiveDeletionPolicy(ft.Spec.DeletionPolicy, ft.Adopted())
}

// EffectiveDeletionPolicy is what deleting the resource does:
// spec.deletionPolicy when set, otherwise Cancel for batches this resource
// submits and Retain for an adopted one.
func (b *TogetherBatch) EffectiveDeletionPolicy() DeletionPolicy {
	return effectiveDeletionPolicy(b.Spec.DeletionPolicy, b.Adopted())
}

func effectiveDeletionPolicy(set DeletionPolicy, adopted bool) DeletionPolicy {
	switch {
	case set != "":
		return set
	case adopted:
		return DeletionPolicyRetain
	default:
		return DeletionPolicyCancel
	}
}

// Ownership tags. Together has no labels or idempotency keys, so the
// operator writes a tag into the names of what it creates: the fine-tune
// suffix (which Together also puts into the job's model_output_name) and the
// name of each uploaded batch input file. A tag says which namespace created
// the work ("n" and NamespaceTag) and which resource and attempt (a hash of
// the resource's UID), so that
//   - an interrupted submission finds its own job instead of paying twice
//     (the tag is recorded in status.submission before the create call);
//   - the event intake adopts an unmatched job only when it was created for
//     the namespace the event arrived in (NamespaceTagIn).
// Tags are labels, not secrets: anyone holding the account's key can create
// work with any name. What they keep apart is the operator's own work across
// the namespaces that share an account.

// MaxJobSuffixLen is the longest fine-tune suffix the operator sends.
// Together documents 64 (together-go) but its Python client enforces 40, so
// the operator stays within 40; the user's part is shortened to leave room
// for the tag.
const MaxJobSuffixLen = 40

// namespaceTokenPrefix starts the namespace token in a remote name; hex
// digits never include it, so no UID or digest can be mistaken for one.
const namespaceTokenPrefix = "n"

var namespaceTokenRE = regexp.MustCompile(`^n[0-9a-f]{8}$`)

// NamespaceTag is 8 hex digits of a SHA-256 of the namespace's name: short
// enough for a 40-character suffix, the same on every replica and after a
// restart.
func NamespaceTag(ns string) string {
	h := sha256.Sum256([]byte("together.ai/namespace/" + ns))
	return hex.EncodeToString(h[:])[:8]
}

// namespaceToken is how NamespaceTag appears in a remote name.
func namespaceToken(ns string) string { return namespaceTokenPrefix + NamespaceTag(ns) }

// NamespaceTagIn returns the namespace tag the operator wrote into a remote
// name — a fine-tune's suffix or model_output_name, a batch input file's
// name — and whether there is one. The operator's tag comes after anything a
// user chose (the user's suffix, the base model's name), so the last token
// of the tag's form is the operator's: a suffix a user wrote to look like
// another namespace's tag cannot win over it. Names written before tags
// named a namespace have none.
func NamespaceTagIn(name string) (string, bool) {
	tokens := strings.FieldsFunc(name, func(r rune) bool { return r == '-' || r == '/' || r == '.' || r == '_' })
	for i := len(tokens) - 1; i >= 0; i-- {
		if namespaceTokenRE.MatchString(tokens[i]) {
			return strings.TrimPrefix(tokens[i], namespaceTokenPrefix), true
		}
	}
	return "", false
}

// TaggedFor reports whether name carries the namespace tag of ns.
func TaggedFor(name, ns string) bool {
	tag, ok := NamespaceTagIn(name)
	return ok && tag == NamespaceTag(ns)
}

// SubmissionTag is the tag of one attempt's job: the namespace token and 8
// hex digits of the resource's UID and the attempt, "n1a2b3c4d-9f8e7d6c".
// Status.submission records it before the create call.
func (ft *TogetherFineTune) SubmissionTag(attempt int32) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", ft.UID, attempt)))
	return namespaceToken(ft.Namespace) + "-" + hex.EncodeToString(h[:])[:8]
}

// JobSuffix is the suffix of the job the tag names: spec.training.suffix
// and the tag, within MaxJobSuffixLen, the user's part cut when needed (the
// tag is what makes a crash recoverable and the job recognisably this
// namespace's).
func (ft *TogetherFineTune) JobSuffix(tag string) string {
	user := ""
	if ft.Spec.Training != nil {
		user = ft.Spec.Training.Suffix
	}
	keep := MaxJobSuffixLen - len(tag) - 1
	if len(user) > keep {
		user = user[:max(keep, 0)]
	}
	user = strings.TrimRight(user, "-")
	if user == "" {
		return tag
	}
	return user + "-" + tag
}

// FineTuneCarriesTag reports whether a job with this suffix and output
// model name carries tag, the tag of a submission (either form: the
// 8-hex-digit tag written before tags named a namespace, or SubmissionTag's).
// The list form of a job has its suffix; the full form (GET) only its
// model_output_name, which Together builds from the suffix.
func FineTuneCarriesTag(suffix, modelOutputName, tag string) bool {
	return tag != "" && (suffix == tag || strings.HasSuffix(suffix, "-"+tag) || strings.Contains(modelOutputName, tag))
}

// SubmissionTag names the input uploads of one submission:
// "tbatch-n<namespace tag>-<UID>-a<attempt>-<digest of the input>". It is
// the same after a restart, different for every resource, names the
// namespace, and tells whether the input is still the one the submission
// began with (the digest ends it).
func (b *TogetherBatch) SubmissionTag(attempt int32, digest string) string {
	return fmt.Sprintf("tbatch-%s-%s-a%d-%s", namespaceToken(b.Namespace), b.UID, attempt, digest)
}

// BatchPartFileName is the name the input of part i of the submission
// tagged tag is uploaded under; the tag in it is how an interrupted
// submission finds its own upload, and how a batch's namespace is told from
// its input file.
func BatchPartFileName(tag string, i int) string {
	return fmt.Sprintf("%s-part-%d.jsonl", tag, i)
}
