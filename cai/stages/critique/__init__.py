"""SL-CAI: answer, critique by a sampled principle, revise; the SFT set from the revisions."""
