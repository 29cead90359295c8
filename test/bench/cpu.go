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

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the CPU time (user + system) used so far by this process
// (senders, the endpoint, the apply step, the manager's informer and the
// baseline writers all live in it) and by the control plane's two child
// processes. On two shared cores every event's CPU is taken from the API
// server's, so the CPU one event costs each process says more about a
// throughput gap than a latency does.
type cpuSample struct {
	self, apiserver, etcd time.Duration
}

func (c cpuSample) sub(o cpuSample) cpuSample {
	return cpuSample{self: c.self - o.self, apiserver: c.apiserver - o.apiserver, etcd: c.etcd - o.etcd}
}

func (c cpuSample) add(o cpuSample) cpuSample {
	return cpuSample{self: c.self + o.self, apiserver: c.apiserver + o.apiserver, etcd: c.etcd + o.etcd}
}

// readCPU samples this process with getrusage and its kube-apiserver and
// etcd children from /proc/PID/stat; a child it cannot find counts zero.
func readCPU() cpuSample {
	var s cpuSample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	me := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15), counted from 1;
		// comm may hold spaces, so split after its closing parenthesis.
		open, close := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || close < open {
			continue
		}
		comm := string(data[open+1 : close])
		f := strings.Fields(string(data[close+1:]))
		if len(f) < 13 || f[1] != me {
			continue
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		d := time.Duration(ut+st) * time.Second / clockTicks
		switch {
		case strings.HasPrefix(comm, "kube-apiserver"):
			s.apiserver += d
		case strings.HasPrefix(comm, "etcd"):
			s.etcd += d
		}
	}
	return s
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go runs the bench on.
const clockTicks = 100
