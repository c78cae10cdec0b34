package main

import (
	"encoding/json"
	"os"

	"github.com/spf13/cobra"

	"github.com/umbranet/umbra/hal/board"
)

// boardJSON is what `umbra-agent board` prints (CONTRACT: {"board": ID, ...}).
type boardJSON struct {
	Board     string `json:"board"`
	Model     string `json:"model"`
	Serial    string `json:"serial"`
	GOARCH    string `json:"goarch"`
	GOARM     string `json:"goarm"`
	StatusLED string `json:"status_led"`
	I2CBus    string `json:"i2c_bus"`
	TPM       string `json:"tpm"`
}

func newBoardCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "board",
		Short: "print the detected board as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := board.Detect(board.Config{Root: os.DirFS(root)})
			if err != nil {
				return err
			}
			b := info.Board
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(boardJSON{
				Board: b.ID, Model: info.Model, Serial: info.Serial,
				GOARCH: b.GOARCH, GOARM: b.GOARM, StatusLED: b.StatusLED.String(),
				I2CBus: b.I2CBus, TPM: b.TPM,
			})
		},
	}
	cmd.Flags().StringVar(&root, "root", "/", "read /proc from this directory instead (a copied or fake device tree)")
	_ = cmd.Flags().MarkHidden("root")
	return cmd
}
