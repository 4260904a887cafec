package main

import (
	"flag"
	"fmt"
	"io"
)

// helpText is what a command's -h, --help or help prints around its flags:
// how to call it, what it does, and examples to copy.
type helpText struct {
	usage    string   // after "Usage: ", e.g. "tally verify [flags]"
	about    string   // a paragraph or two
	examples []string // command lines, printed under "Examples:"
}

// setHelp makes fs print h, its flags and the examples when asked for help
// or given a flag it does not know.
func setHelp(fs *flag.FlagSet, h helpText) {
	fs.Usage = func() { printHelp(fs.Output(), fs, h) }
}

func printHelp(w io.Writer, fs *flag.FlagSet, h helpText) {
	fmt.Fprintf(w, "Usage: %s\n\n", h.usage)
	if h.about != "" {
		fmt.Fprintf(w, "%s\n\n", h.about)
	}
	if fs != nil {
		fmt.Fprintln(w, "Flags:")
		fs.PrintDefaults()
		fmt.Fprintln(w)
	}
	if len(h.examples) > 0 {
		fmt.Fprintln(w, "Examples:")
		for _, e := range h.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

// isHelp reports whether arg asks for help where a subcommand is expected.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}
