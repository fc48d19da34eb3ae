"""What every layer of lstm-inspect uses and nothing above it decides: the error people read (`errors`), the
budgets a hostile file cannot exceed (`budget`), progress reports (`progress`) and BLAS threads (`threads`).
"""

__version__ = "0.2.0"
