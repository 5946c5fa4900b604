package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// The scripts hand completion back to imgform itself (urfave/cli's --generate-bash-completion), so they never
// fall behind the commands and flags.
const bashCompletion = `_imgform_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == "-"* ]]; then
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  [[ ${#COMPREPLY[@]} -eq 0 ]] && COMPREPLY=($(compgen -f -- "${cur}"))
  return 0
}
complete -o filenames -F _imgform_complete imgform
`

const zshCompletion = `#compdef imgform
_imgform() {
  local -a opts
  opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  _describe 'values' opts
  _files
}
compdef _imgform imgform
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: source <(imgform completion bash), or zsh, or fish",
		ArgsUsage: "bash|zsh|fish",
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash", "":
				_, err := fmt.Fprint(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(c.App.Writer, zshCompletion)
				return err
			case "fish":
				// fish wants its completions as static complete lines (imgform completion fish >
				// ~/.config/fish/completions/imgform.fish), which urfave/cli writes from the commands and
				// flags; file arguments come from fish itself.
				script, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(c.App.Writer, script)
				return err
			}
			return fmt.Errorf("no completion for shell %q; use bash, zsh or fish", c.Args().First())
		},
	}
}
