package migration

import (
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	oldID = "old/id"
	newID = "new/id"
)

func TestRewriteArg(t *testing.T) {
	cases := []struct {
		arg    string
		want   string
		wantOK bool
	}{
		{"old/id", "new/id", true},
		{"--model=old/id", "--model=new/id", true},
		{"MODEL=old/id", "MODEL=new/id", true},
		{"--model=old/id-v2", "", false},
		{"--model=xold/id", "", false},
		{"old/id-v2", "", false},
		{"xold/id", "", false},
		{"=old/id", "", false},
		{"--model", "", false},
		{"--model=old/id=x", "", false},
	}
	for _, c := range cases {
		got, ok := RewriteArg(c.arg, oldID, newID)
		if got != c.want || ok != c.wantOK {
			t.Errorf("RewriteArg(%q) = %q, %v; want %q, %v", c.arg, got, ok, c.want, c.wantOK)
		}
	}
}

func deployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "d", ResourceVersion: "7"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "warm", Args: []string{"--model", "old/id"}}},
			Containers: []corev1.Container{
				{Name: "sidecar", Env: []corev1.EnvVar{{Name: "MODEL", Value: "old/id-v2"}}},
				{
					Name: "app",
					Env: []corev1.EnvVar{
						{Name: "OTHER", Value: "xold/id"},
						{Name: "MODEL", Value: "old/id"},
						{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}},
					},
					Command: []string{"serve", "--model=old/id"},
					Args:    []string{"--port=80", "--model=old/id-v2", "--fallback=old/id"},
				},
			},
		}}},
	}
}

func workloadOf(d *appsv1.Deployment) Workload {
	return Workload{Annotations: d.Annotations, Template: &d.Spec.Template, ResourceVersion: d.ResourceVersion}
}

func TestScanFindsWholeValuesOnly(t *testing.T) {
	d := deployment()
	d.Annotations = map[string]string{ModelAnnotation: oldID}
	d.Spec.Template.Annotations = map[string]string{ModelAnnotation: "old/id-v2"}
	got := map[string][2]string{}
	for _, c := range Scan(workloadOf(d), oldID, newID) {
		got[c.Field] = [2]string{c.From, c.To}
	}
	want := map[string][2]string{
		"metadata.annotations[together.ai/model]":         {"old/id", "new/id"},
		"spec.template.spec.initContainers[warm].args[1]": {"old/id", "new/id"},
		"spec.template.spec.containers[app].env[MODEL]":   {"old/id", "new/id"},
		"spec.template.spec.containers[app].command[1]":   {"--model=old/id", "--model=new/id"},
		"spec.template.spec.containers[app].args[2]":      {"--fallback=old/id", "--fallback=new/id"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Scan found %v, want %v", got, want)
	}
}

// apply runs a patch the way the API server does (it uses the same library).
func apply(t *testing.T, d *appsv1.Deployment, patch []byte) (*appsv1.Deployment, error) {
	t.Helper()
	doc, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", patch, err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		return nil, err
	}
	res := &appsv1.Deployment{}
	if err := json.Unmarshal(out, res); err != nil {
		t.Fatal(err)
	}
	return res, nil
}

func TestPatchChangesOnlyMatchesAndRollsBack(t *testing.T) {
	orig := deployment()
	changes := Scan(workloadOf(orig), oldID, newID)
	patch, err := Patch(workloadOf(orig), changes, oldID)
	if err != nil {
		t.Fatal(err)
	}
	migrated, err := apply(t, orig, patch)
	if err != nil {
		t.Fatalf("applying %s: %v", patch, err)
	}

	want := deployment()
	want.Spec.Template.Spec.InitContainers[0].Args[1] = newID
	want.Spec.Template.Spec.Containers[1].Env[1].Value = newID
	want.Spec.Template.Spec.Containers[1].Command[1] = "--model=new/id"
	want.Spec.Template.Spec.Containers[1].Args[2] = "--fallback=new/id"
	if !reflect.DeepEqual(migrated.Spec, want.Spec) {
		t.Errorf("migrated spec = %+v\nwant %+v", migrated.Spec, want.Spec)
	}
	if migrated.Annotations[PreviousModelAnnotation] != oldID {
		t.Errorf("previous-model annotation = %q, want %q", migrated.Annotations[PreviousModelAnnotation], oldID)
	}

	rolledBack, err := apply(t, migrated, []byte(migrated.Annotations[RollbackAnnotation]))
	if err != nil {
		t.Fatalf("applying rollback: %v", err)
	}
	if !reflect.DeepEqual(rolledBack.Spec, orig.Spec) {
		t.Errorf("rolled back spec = %+v\nwant %+v", rolledBack.Spec, orig.Spec)
	}
	if len(rolledBack.Annotations) != 0 {
		t.Errorf("rollback left annotations %v", rolledBack.Annotations)
	}
}

func TestPatchRefusesConcurrentChange(t *testing.T) {
	orig := deployment()
	orig.Annotations = map[string]string{"keep": "me"}
	changes := Scan(workloadOf(orig), oldID, newID)
	patch, err := Patch(workloadOf(orig), changes, oldID)
	if err != nil {
		t.Fatal(err)
	}

	edited := deployment()
	edited.Annotations = map[string]string{"keep": "me"}
	edited.Spec.Template.Spec.Containers[1].Env[1].Value = "someone/else"
	if _, err := apply(t, edited, patch); err == nil {
		t.Error("patch overwrote a value changed after the scan")
	}

	shifted := deployment()
	shifted.Annotations = map[string]string{"keep": "me"}
	shifted.Spec.Template.Spec.Containers[0], shifted.Spec.Template.Spec.Containers[1] =
		shifted.Spec.Template.Spec.Containers[1], shifted.Spec.Template.Spec.Containers[0]
	if _, err := apply(t, shifted, patch); err == nil {
		t.Error("patch applied to containers that moved since the scan")
	}

	// An unrelated concurrent change (replicas, another annotation) is kept.
	other := deployment()
	other.Annotations = map[string]string{"keep": "me", "added": "later"}
	other.ResourceVersion = "8"
	res, err := apply(t, other, patch)
	if err != nil {
		t.Fatalf("patch failed on an unrelated change: %v", err)
	}
	if res.Annotations["added"] != "later" || res.Annotations["keep"] != "me" {
		t.Errorf("annotations = %v, want the concurrent ones kept", res.Annotations)
	}
}

func TestPatchCreatingAnnotationsNeedsSameVersion(t *testing.T) {
	orig := deployment()
	patch, err := Patch(workloadOf(orig), Scan(workloadOf(orig), oldID, newID), oldID)
	if err != nil {
		t.Fatal(err)
	}
	later := deployment()
	later.ResourceVersion = "8"
	later.Annotations = map[string]string{"added": "later"}
	if _, err := apply(t, later, patch); err == nil {
		t.Error("patch replaced an annotations map created after the scan")
	}
}
