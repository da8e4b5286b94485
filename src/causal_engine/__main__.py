"""`python -m causal_engine ...` is the same as the `causal-engine` console script."""

from causal_engine.run import main

main()
