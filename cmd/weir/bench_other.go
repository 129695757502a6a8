//go:build !linux

package main

import (
	"errors"
	"syscall"
	"time"
)

func selfCPU() (time.Duration, error) { return 0, errors.ErrUnsupported }

func processCPU(int) (time.Duration, error) { return 0, errors.ErrUnsupported }

// childAttr: elsewhere a bench broker process outlives a killed bench.
func childAttr() *syscall.SysProcAttr { return nil }
