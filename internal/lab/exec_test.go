package lab_test

import "os/exec"

func execSh(script string) *exec.Cmd { return exec.Command("/bin/sh", "-c", script) }
