package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/umbranet/umbra/agent"
	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/enroll"
)

const (
	// defaultI2CAddr is the --i2c-addr default: the ATECC608's factory address, in the
	// hex form i2cdetect shows.
	defaultI2CAddr = "0x60"
	// maxI2CAddr is the highest 7-bit I2C address.
	maxI2CAddr = 0x7f
)

// storeFlags are the flags that only mean something with one --key store.
var storeFlags = []struct{ flag, store string }{
	{"tpm", keystore.StoreTPM},
	{"i2c", keystore.StoreATECC608},
	{"i2c-addr", keystore.StoreATECC608},
	{"slot", keystore.StoreATECC608},
}

func newEnrollCmd() *cobra.Command {
	var (
		jwtFile, out, i2cAddr string
		ks                    agent.KeyStore
		force                 bool
	)
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "redeem a one-time token and write the identity file (mode 0600)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkStoreFlags(cmd.Flags(), ks.Store); err != nil {
				return err
			}
			if ks.Store == keystore.StoreATECC608 {
				addr, err := parseI2CAddr(i2cAddr)
				if err != nil {
					return err
				}
				ks.I2CAddr = addr
			}
			if err := checkOutFree(out, force); err != nil {
				return err
			}
			token, err := enroll.ReadTokenFile(jwtFile)
			if err != nil {
				return err
			}
			id, err := agent.Enroll(cmd.Context(), token, agent.EnrollOptions{Path: out, KeyStore: ks})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s: %s\n", id.Name(), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&jwtFile, "jwt", "", "file holding the enrollment token (required)")
	f.StringVar(&out, "out", "", "identity file to write (required)")
	f.BoolVar(&force, "force", false, "replace an existing --out file (only once the new enrollment has succeeded)")
	f.StringVar(&ks.Store, "key", keystore.StoreFile, "key store: file (the key is in the identity file), tpm or atecc608")
	f.StringVar(&ks.TPM, "tpm", keystore.DefaultTPM, "TPM 2.0 device, or tcp:HOST:PORT for swtpm (--key tpm)")
	f.StringVar(&ks.I2CBus, "i2c", "", `I2C bus of the secure element by name or number; "" is the first bus (--key atecc608)`)
	f.StringVar(&i2cAddr, "i2c-addr", defaultI2CAddr, "7-bit I2C address of the secure element, hex (--key atecc608)")
	f.IntVar(&ks.Slot, "slot", 0, "key slot of the secure element; its old key is replaced (--key atecc608)")
	cmd.MarkFlagRequired("jwt")
	cmd.MarkFlagRequired("out")
	return cmd
}

// checkOutFree refuses to enroll over an existing identity file unless force: a token
// of another identity would otherwise silently replace a running device's identity.
// With force the file is replaced atomically, and only after the enrollment succeeded.
func checkOutFree(out string, force bool) error {
	if force {
		return nil
	}
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("enroll: %s exists: it holds an identity this would replace; pass --force to replace it once the new enrollment succeeds", out)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("enroll: %w", err)
	}
	return nil
}

// checkStoreFlags refuses an unknown store and flags given for another store than the
// chosen one, which would otherwise be silently ignored.
func checkStoreFlags(flags *pflag.FlagSet, store string) error {
	switch store {
	case keystore.StoreFile, keystore.StoreTPM, keystore.StoreATECC608:
	default:
		return fmt.Errorf("enroll: --key %q: want %s, %s or %s", store, keystore.StoreFile, keystore.StoreTPM, keystore.StoreATECC608)
	}
	for _, sf := range storeFlags {
		if flags.Changed(sf.flag) && sf.store != store {
			return fmt.Errorf("enroll: --%s applies only to --key %s", sf.flag, sf.store)
		}
	}
	return nil
}

// parseI2CAddr reads a 7-bit I2C address in hex, with or without 0x, as i2cdetect and
// datasheets write it.
func parseI2CAddr(s string) (uint16, error) {
	hex := strings.TrimPrefix(strings.ToLower(s), "0x")
	v, err := strconv.ParseUint(hex, 16, 16)
	if err != nil || v == 0 || v > maxI2CAddr {
		return 0, fmt.Errorf("enroll: --i2c-addr %q: want a 7-bit address in hex, 0x01 to %#x", s, maxI2CAddr)
	}
	return uint16(v), nil
}
