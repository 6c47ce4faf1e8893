"""Shell completion for bash and zsh, generated from the argument parser itself (so it never drifts)."""

from __future__ import annotations

import argparse


def _tree(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Command path ("" for the top level, "sim", "sim serve", …) → the words that may follow it."""
    out: dict[str, list[str]] = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        words: list[str] = []
        for action in p._actions:
            words.extend(o for o in action.option_strings if o.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    words.append(name)
                    walk(child, f"{path} {name}".strip())
            elif action.choices and not action.option_strings:
                words.extend(str(c) for c in action.choices)
        out[path] = sorted(set(words))

    walk(parser, "")
    return out


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    tree = _tree(parser)
    cases = "\n".join(f'        "{path}") words="{" ".join(words)}" ;;' for path, words in sorted(tree.items()))
    bash = f"""# udn-rollout {shell} completion (udn-rollout completion {shell})
_udn_rollout() {{
    local cur path="" i w words
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        [[ "$w" == -* ]] && continue
        case " {" ".join(sorted(p for p in tree if p))} " in
            *" ${{path:+$path }}$w "*) path="${{path:+$path }}$w" ;;
        esac
    done
    case "$path" in
{cases}
        *) words="" ;;
    esac
    if [[ "$cur" == -* || -n "$words" ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
    [[ ${{#COMPREPLY[@]}} -eq 0 ]] && COMPREPLY=($(compgen -f -- "$cur"))
}}
"""
    if shell == "zsh":
        return (
            "autoload -U +X bashcompinit && bashcompinit\n"
            + bash
            + "complete -o filenames -F _udn_rollout udn-rollout\n"
        )
    return bash + "complete -o filenames -F _udn_rollout udn-rollout\n"
