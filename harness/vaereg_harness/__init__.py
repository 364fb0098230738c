"""vaereg's harness: data sets, training stages, evaluation, checkpoints and the results store."""
