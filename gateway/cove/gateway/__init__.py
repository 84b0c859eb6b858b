"""The data plane: the one door every IDE plugin talks to."""
