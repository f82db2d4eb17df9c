"""``edgekit generate``: generate tokens (and text) from a seq2seq or causal-LM bundle."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from edgekit.runtimes.errors import UsageError

from .common import emit, out

__all__ = ["register", "parse_ids"]


def parse_ids(text: str) -> list[int]:
    """Parse ``"5,6,7"`` into token ids.

    Example:
        >>> parse_ids("5, 6,7")
        [5, 6, 7]
    """
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--input-ids {text!r}: expected comma-separated integers such as 5,6,7") from None
    if not ids:
        raise UsageError(f"--input-ids {text!r}: no token ids given")
    return ids


def generate_command(
    bundle: Path = typer.Argument(..., help="A bundle exported with task seq2seq or causal-lm."),
    text: Optional[List[str]] = typer.Option(None, "--text", help="Input text (repeat for a batch); needs the bundle's tokenizer."),
    input_ids: Optional[List[str]] = typer.Option(None, "--input-ids", help="Comma-separated token ids (repeat for a batch)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Tokens to generate at most (default: the bundle's)."),
    num_beams: Optional[int] = typer.Option(None, "--num-beams", help="Beam search width (1: greedy or sampling)."),
    do_sample: bool = typer.Option(False, "--do-sample", help="Sample instead of taking the most likely token."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (> 0)."),
    top_k: int = typer.Option(50, "--top-k", help="Sample among the k most likely tokens (0: all)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Sample within this probability mass."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for sampling."),
    stream: bool = typer.Option(False, "--stream", help="Print each token as it is generated (with beams: as soon as every beam that can still win agrees on it)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Intra-op threads (default: the runtime's)."),
    draft: Optional[str] = typer.Option(None, "--draft", help="input: greedy with drafts copied from the input, verified in one decoder call (same tokens, fewer calls)."),
    draft_tokens: int = typer.Option(8, "--draft-tokens", help="With --draft input: tokens drafted per decoder call at most."),
    as_json: bool = typer.Option(False, "--json", help="Print ids (and text) as JSON."),
) -> None:
    """Generate from a language-model bundle: --text "..." or --input-ids 5,6,7."""
    import edgekit.runtimes as rt
    from edgekit.runtimes.bundle import read_bundle

    if bool(text) == bool(input_ids):
        raise UsageError("pass either --text or --input-ids (one of them)")
    if stream and as_json:
        raise UsageError("--stream and --json do not mix: pick one")
    task = read_bundle(bundle, verify=False).manifest.task
    if task not in ("seq2seq", "causal-lm"):
        raise UsageError(f"{bundle}: bundle task {task!r} is not a generation task (seq2seq or causal-lm)")
    lm = rt.load(bundle, threads=threads)
    rows = lm.encode(list(text)) if text else [parse_ids(i) for i in input_ids]
    if stream and len(rows) != 1:
        raise UsageError("--stream needs a single input")

    def on_token(tokens) -> None:
        token = int(tokens[0])
        piece = lm.tokenizer.decode([token]) if text else f"{token} "
        sys.stdout.write(piece)
        sys.stdout.flush()

    sequences = lm.generate(
        rows, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=do_sample, temperature=temperature,
        top_k=top_k, top_p=top_p, seed=seed, on_token=on_token if stream else None, draft=draft,
        draft_tokens=draft_tokens,
    )
    result = {"sequences": sequences.tolist(), "new_tokens": lm.completions(sequences, rows)}
    if draft is not None:
        result["draft"] = lm.last_draft_stats.to_json()
    if text:
        result["text"] = lm.decode(sequences, rows)
    if stream:
        sys.stdout.write("\n")
        return

    def render() -> None:
        for i, row in enumerate(result["sequences"]):
            out.print(f"ids: {' '.join(map(str, row))}")
            if text:
                out.print(f"text: {result['text'][i]}")
        if draft is not None:
            stats = result["draft"]
            out.print(f"draft: {stats['accepted']} of {stats['drafted']} drafted tokens accepted "
                      f"({100 * stats['accept_rate']:.1f}%), {stats['decoder_calls']} decoder calls for "
                      f"{stats['new_tokens']} new tokens")

    emit(result, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_command)
