"""RLAIF: answer pairs labelled by a feedback model from the log-probs of the options, both orders."""
