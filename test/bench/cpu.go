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
		// pid (comm) state ppid ...: the parent is the first field after
		// comm, which may hold spaces.
		open, close := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || close < open {
			continue
		}
		comm := string(data[open+1 : close])
		if f := strings.Fields(string(data[close+1:])); len(f) < 2 || f[1] != me {
			continue
		}
		d := statCPU(data)
		switch {
		case strings.HasPrefix(comm, "kube-apiserver"):
			s.apiserver += d
		case strings.HasPrefix(comm, "etcd"):
			s.etcd += d
		}
	}
	return s
}

// procCPU is the CPU time (user + system) process pid has used, zero when
// it cannot be read.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	return statCPU(data)
}

// statCPU reads utime + stime from a /proc/PID/stat line: fields 14 and 15
// counted from 1; comm may hold spaces, so they are counted after its
// closing parenthesis.
func statCPU(data []byte) time.Duration {
	close := bytes.LastIndexByte(data, ')')
	if close < 0 {
		return 0
	}
	f := strings.Fields(string(data[close+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go runs the bench on.
const clockTicks = 100
