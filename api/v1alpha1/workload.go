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

// The annotations the operator keeps on a workload (Deployment or
// StatefulSet) whose model fields it changed, whether a fine-tune deployed
// its model there or a migration moved it off a deprecated model. Both write
// one rollback record in one format, and both rollback paths read it
// (internal/workload).
const (
	// RollbackAnnotation holds an RFC 6902 JSON patch that undoes every
	// change the operator made to the workload's model fields, newest first:
	// each step tests that the field still holds what the operator wrote and
	// puts back what it held before. The patch also removes this annotation,
	// so `kubectl patch --type=json -p "$(kubectl get … -o
	// jsonpath='{.metadata.annotations.together\.ai/rollback}')"` applies it.
	RollbackAnnotation = "together.ai/rollback"

	// RolledBackAnnotation on a workload names the model it was rolled back
	// to (the rollback of a record a migration contributed to sets it). No
	// migration moves that workload off that model again, whoever creates
	// it, until a person removes the annotation.
	RolledBackAnnotation = "together.ai/rolled-back"
)

// Annotations written by earlier versions of the operator. They are read —
// a workload carrying them still rolls back, and its record is carried into
// RollbackAnnotation the next time the operator patches it — and never
// written.
const (
	// LegacyMigrationRollbackAnnotation held a migration's rollback JSON
	// patch.
	LegacyMigrationRollbackAnnotation = "migration.together.ai/previous.rollback"
	// LegacyMigrationPreviousModelAnnotation held the model a migration
	// moved the workload off.
	LegacyMigrationPreviousModelAnnotation = "migration.together.ai/previous.model"
	// LegacyRolledBackAnnotation is RolledBackAnnotation as a migration's
	// rollback patch used to set it.
	LegacyRolledBackAnnotation = "migration.together.ai/previous.rolled-back"
	// LegacyPreviousModelAnnotationPrefix started the annotation in which a
	// fine-tune kept an env var's value from before it deployed its model:
	// <prefix><container>.<env>, or <prefix><first 12 hex digits of the
	// sha256 of "container/env"> when that is not a valid key.
	LegacyPreviousModelAnnotationPrefix = "together.ai/previous-model."
)
