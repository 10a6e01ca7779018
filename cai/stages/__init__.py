"""The data stages of the pipeline: generate, critique (SL-CAI), label (RLAIF), export."""
