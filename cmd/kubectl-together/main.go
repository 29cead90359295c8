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

// Command kubectl-together is a kubectl plugin (`kubectl together ...`, or
// installed with krew from plugins/together.yaml) for the together.ai
// resources:
//
//	kubectl together status [-n NS | -A]      every kind in one table, a loss sparkline per running fine-tune
//	kubectl together plot tft/NAME            the loss curve (and eval loss) of a fine-tune, in the terminal
//	kubectl together send --url URL ...       a signed test event, as a relay would send it
//	kubectl together approve tmm/NAME         approve a Manual migration
//	kubectl together rollback tmm/NAME        undo a migration from the patches recorded on its workloads
//	kubectl together rollback tft/NAME        undo the model changes recorded on a fine-tune's Deployment
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	togetherv1 "github.com/together-operator/together-operator/api/v1alpha1"
)

const usage = `kubectl together: drive the together.ai resources.

Commands:
  status   [-n NAMESPACE | -A]                  every resource of the four kinds in one table
  plot     tft/NAME [--width 60] [--height 12]  the loss curve of a fine-tune from its status
  send     --url URL (--secret S | --subscription NAME) --type TYPE [--data JSON] [--cacert FILE]
                                                post a signed test event to the events endpoint
  approve  tmm/NAME                             approve a Manual model migration
  rollback tmm/NAME                             stop a migration and restore its workloads
  rollback tft/NAME                             restore a fine-tune's Deployment from its rollback record

Common flags: -n/--namespace, -A/--all-namespaces (status), --kubeconfig, --context.
`

// env is what a command runs against; tests build one on a test API server.
type env struct {
	c         client.Client
	namespace string
	out       io.Writer
	now       func() time.Time
}

// commonFlags are accepted by every command, before or after its arguments.
type commonFlags struct {
	namespace, kubeconfig, kubeContext string
	allNamespaces                      bool
}

func (f *commonFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.namespace, "namespace", "", "Namespace (default: the kubeconfig context's).")
	fs.StringVar(&f.namespace, "n", "", "Namespace (shorthand).")
	fs.BoolVar(&f.allNamespaces, "all-namespaces", false, "Every namespace (status).")
	fs.BoolVar(&f.allNamespaces, "A", false, "Every namespace (shorthand).")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Path to the kubeconfig file.")
	fs.StringVar(&f.kubeContext, "context", "", "Kubeconfig context to use.")
}

// parseInterspersed parses flags wherever they stand among the positional
// arguments, as kubectl does (`approve tmm/x -n ns` and `approve -n ns tmm/x`).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		os.Exit(1)
	}
}

// run runs one command. With e nil it connects with the kubeconfig (the
// KUBECONFIG variable, --kubeconfig and --context as kubectl does).
func run(ctx context.Context, args []string, out, errOut io.Writer, e *env) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(out, usage)
		return nil
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("kubectl together "+cmd, flag.ContinueOnError)
	fs.SetOutput(errOut)
	var common commonFlags
	common.bind(fs)
	var (
		width, height         int
		url, secret, sub, typ string
		data, id, caFile      string
		keepMigration         bool
	)
	switch cmd {
	case "plot":
		fs.IntVar(&width, "width", 60, "Plot width in columns.")
		fs.IntVar(&height, "height", 12, "Plot height in rows.")
	case "send":
		fs.StringVar(&url, "url", "", "Events endpoint: a full URL, or its base (http://HOST:PORT) with --subscription.")
		fs.StringVar(&secret, "secret", os.Getenv("TOGETHER_WEBHOOK_SECRET"), "HMAC signing secret (env TOGETHER_WEBHOOK_SECRET).")
		fs.StringVar(&sub, "subscription", "", "TogetherWebhookSubscription whose Secret signs the event and whose path receives it.")
		fs.StringVar(&typ, "type", "", "Event type: "+strings.Join(eventTypes(), ", ")+".")
		fs.StringVar(&data, "data", "{}", "Event data as JSON.")
		fs.StringVar(&id, "id", "", "Event ID (default: a random evt_...).")
		fs.StringVar(&caFile, "cacert", "", "PEM file of the CA to trust for an https URL (default: the system's).")
	case "rollback":
		fs.BoolVar(&keepMigration, "keep-migration-active", false, "Do not set the migration's spec.dryRun=true (it may then migrate the workloads again).")
	case "status", "approve":
	default:
		return fmt.Errorf("unknown command %q\n\n%s", cmd, usage)
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if e == nil {
		if e, err = connect(common); err != nil {
			return err
		}
	}
	if common.namespace != "" {
		e.namespace = common.namespace
	}
	e.out = out
	if e.now == nil {
		e.now = time.Now
	}
	switch cmd {
	case "status":
		ns := e.namespace
		if common.allNamespaces {
			ns = ""
		}
		return status(ctx, e, ns)
	case "plot":
		name, err := oneRef(pos, "tft", "togetherfinetune", "togetherfinetunes")
		if err != nil {
			return err
		}
		return plot(ctx, e, name, width, height)
	case "send":
		return send(ctx, e, sendOptions{url: url, secret: secret, subscription: sub, typ: typ, data: data, id: id, caFile: caFile})
	case "approve":
		name, err := oneRef(pos, "tmm", "togethermodelmigration", "togethermodelmigrations")
		if err != nil {
			return err
		}
		return approve(ctx, e, name)
	case "rollback":
		if len(pos) == 1 && isFineTuneRef(pos[0]) {
			name, err := oneRef(pos, "tft", "togetherfinetune", "togetherfinetunes")
			if err != nil {
				return err
			}
			return rollbackFineTune(ctx, e, name)
		}
		name, err := oneRef(pos, "tmm", "togethermodelmigration", "togethermodelmigrations")
		if err != nil {
			return err
		}
		return rollback(ctx, e, name, keepMigration)
	}
	return nil
}

// oneRef takes exactly one KIND/NAME (or NAME) argument of the given kind.
// isFineTuneRef reports whether ref names a TogetherFineTune (tft/NAME).
func isFineTuneRef(ref string) bool {
	kind, _, found := strings.Cut(ref, "/")
	return found && (strings.EqualFold(kind, "tft") || strings.EqualFold(kind, "togetherfinetune") || strings.EqualFold(kind, "togetherfinetunes"))
}

func oneRef(pos []string, kinds ...string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("want one %s/NAME argument, got %d", kinds[0], len(pos))
	}
	kind, name, found := strings.Cut(pos[0], "/")
	if !found {
		return pos[0], nil
	}
	for _, k := range kinds {
		if strings.EqualFold(kind, k) {
			if name == "" {
				break
			}
			return name, nil
		}
	}
	return "", fmt.Errorf("%q: want %s/NAME", pos[0], kinds[0])
}

func connect(f commonFlags) (*env, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f.kubeconfig != "" {
		rules.ExplicitPath = f.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.kubeContext})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig's namespace: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme()})
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return &env{c: c, namespace: ns}, nil
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(togetherv1.AddToScheme(s))
	return s
}
