"""The screens: dashboard (the operations), run (one run, live), and the small modals."""
