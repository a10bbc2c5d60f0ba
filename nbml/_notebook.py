"""Where the code runs: inside a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab) or not."""


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "ZMQInteractiveShell" in [c.__name__ for c in type(shell).__mro__]
