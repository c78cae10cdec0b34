package enroll

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// ReadTokenFile reads a token from path, refusing anything larger than a token can be.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("enroll: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxTokenSize+1))
	if err != nil {
		return "", fmt.Errorf("enroll: %w", err)
	}
	if len(data) > MaxTokenSize {
		return "", fmt.Errorf("enroll: %s is larger than a token", path)
	}
	return strings.TrimSpace(string(data)), nil
}
