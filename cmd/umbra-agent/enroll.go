package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"umbra/agent"
	"umbra/hal/keystore"
)

func newEnrollCmd() *cobra.Command {
	var jwtFile, out, store string
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "redeem a one-time token and write the identity file (mode 0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := readToken(jwtFile)
			if err != nil {
				return err
			}
			if store != keystore.StoreFile {
				return fmt.Errorf("enroll: key store %q is not available in this build", store)
			}
			id, err := agent.Enroll(cmd.Context(), token, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s: %s\n", id.Name, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&jwtFile, "jwt", "", "file holding the enrollment token (required)")
	cmd.Flags().StringVar(&out, "out", "", "identity file to write (required)")
	cmd.Flags().StringVar(&store, "key", keystore.StoreFile, "key store: file, tpm or atecc608")
	cmd.MarkFlagRequired("jwt")
	cmd.MarkFlagRequired("out")
	return cmd
}

// maxTokenFile bounds what is read of a token file.
const maxTokenFile = 8 << 10

func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("enroll: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("enroll: %w", err)
	}
	if len(data) > maxTokenFile {
		return "", fmt.Errorf("enroll: %s is larger than a token", path)
	}
	return strings.TrimSpace(string(data)), nil
}
