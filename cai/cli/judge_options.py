"""Options of the guard judge and the judge's chat template, shared by ``cai eval`` and ``cai audit judge``
(the audit must be able to judge exactly as the eval does)."""

from __future__ import annotations

import typer

GuardTemplateOpt = typer.Option(None, "--guard-template",
                                help="--judge guard: the task prompt, a text file with {categories} and "
                                     "{conversation} slots (default: Llama Guard 3's).")
GuardCategoriesOpt = typer.Option(None, "--guard-categories",
                                  help="--judge guard: YAML mapping of category code to name (default: "
                                       "Llama Guard 3's S1..S14).")
FeedbackChatTemplateOpt = typer.Option(None, "--feedback-chat-template",
                                       help="hf: a Jinja chat template (file or text) for the judge; "
                                            "'plain-llama3' serves a Llama Guard 3 with the plain template "
                                            "its task prompt needs.")
