//go:build !linux

package main

import (
	"errors"
	"time"
)

func selfCPU() (time.Duration, error) { return 0, errors.ErrUnsupported }

func processCPU(int) (time.Duration, error) { return 0, errors.ErrUnsupported }
