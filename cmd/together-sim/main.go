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

// Command together-sim runs the project's local stand-in for the Together
// API (internal/togethersim) and, as `together-sim send`, signs and posts one
// event of the project's push contract to a receiver, the way `stripe
// trigger` helps test an endpoint.
//
//	together-sim [serve] [--addr 127.0.0.1:8787] [--api-key KEY] [--step-interval 2s]
//	together-sim send --url URL --secret SECRET --type fine_tune.completed --data '{...}'
//
// The API key defaults to $TOGETHER_API_KEY, the signing secret to
// $TOGETHER_WEBHOOK_SECRET; neither is ever printed.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/together-operator/together-operator/internal/togethersim"

	"github.com/together-operator/together-operator/pkg/push"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "together-sim:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "send" {
		return send(args[1:], out)
	}
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	return serve(args, out)
}

func serve(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8787", "Address to listen on.")
	key := fs.String("api-key", os.Getenv("TOGETHER_API_KEY"), "The only API key accepted (env TOGETHER_API_KEY); empty accepts any bearer token.")
	step := fs.Duration("step-interval", 2*time.Second, "Time between lifecycle steps of jobs, batches and endpoints.")
	steps := fs.Int("total-steps", 5, "Training steps per fine-tune.")
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: together-sim [serve] [flags]\n\nServes a local stand-in for the Together API (and this project's push contract).\n\nFlags:")
		fs.PrintDefaults()
		fmt.Fprintln(out, "\nOther command: together-sim send --help")
	}
	if err := fs.Parse(args); err != nil {
		return helpIsNoError(err)
	}
	s := togethersim.New(togethersim.Options{APIKey: *key, StepInterval: *step, TotalSteps: *steps})
	u, err := s.StartAt(*addr)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(out, "together-sim serving the Together API at %s (webhook routes are the project's own contract)\n", u)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

func send(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	target := fs.String("url", "", "Receiver URL to post the event to.")
	secret := fs.String("secret", os.Getenv("TOGETHER_WEBHOOK_SECRET"), "HMAC signing secret (env TOGETHER_WEBHOOK_SECRET).")
	typ := fs.String("type", "", "Event type, e.g. fine_tune.completed.")
	data := fs.String("data", "{}", "Event data as JSON.")
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: together-sim send --url URL --secret SECRET --type TYPE [--data JSON]\n\n"+
			"Signs one event of this project's push contract (X-Together-Signature and Standard Webhooks headers),\n"+
			"posts it and prints the receiver's answer. Exits non-zero when the receiver refuses it.\n\nFlags:")
		fs.PrintDefaults()
		fmt.Fprintln(out, "\nExample (the sample fine-tune's job, with `make run`):\n"+
			"  together-sim send --url http://127.0.0.1:8090/webhooks/together/default/default --secret demo-signing-secret-change-me \\\n"+
			"    --type fine_tune.checkpoint --data \"{\\\"fine_tune_id\\\":\\\"$(kubectl get tft support-bot -o jsonpath='{.status.jobID}')\\\",\\\"step\\\":1,\\\"loss\\\":0.9}\"")
	}
	if err := fs.Parse(args); err != nil {
		return helpIsNoError(err)
	}
	if *target == "" || *secret == "" || *typ == "" {
		return errors.New("send needs --url, --secret and --type")
	}
	if !json.Valid([]byte(*data)) {
		return errors.New("--data is not valid JSON")
	}
	id, body, err := envelope(*typ, json.RawMessage(*data))
	if err != nil {
		return err
	}
	status, answer, err := post(*target, []byte(*secret), id, body)
	if err != nil {
		return err
	}
	// The receiver's answer says what it did (applied, duplicate, or why it
	// did not match anything), so it is shown on success too.
	fmt.Fprintf(out, "sent %s %s: HTTP %d %s\n", *typ, id, status, strings.TrimSpace(answer))
	if status < 200 || status > 299 {
		return fmt.Errorf("receiver answered HTTP %d: %s", status, strings.TrimSpace(answer))
	}
	return nil
}

// helpIsNoError makes -h and --help a successful run: the usage was printed
// because it was asked for.
func helpIsNoError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func envelope(typ string, data json.RawMessage) (string, []byte, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("making event id: %w", err)
	}
	env := push.Envelope{ID: "evt_" + hex.EncodeToString(b[:]), Type: typ, CreatedAt: time.Now().UTC(), Data: data}
	body, err := json.Marshal(env)
	if err != nil {
		return "", nil, fmt.Errorf("encoding envelope: %w", err)
	}
	return env.ID, body, nil
}

// post sends one signed event and returns the receiver's status code and
// the start of its answer, which says why when it refuses.
func post(target string, secret []byte, id string, body []byte) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, "", fmt.Errorf("building request: %w", err)
	}
	togethersim.SignRequest(req, secret, id, time.Now(), body)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("posting event: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, string(answer), nil
}
