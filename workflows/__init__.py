"""imagegate's Argo side: Hera templates, render, lint, plan, local run, client and CLI.

Imports stay lazy: `import workflows` costs nothing, each command loads what it uses.
"""
