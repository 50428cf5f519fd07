from xfer_jax.cli.main import main

main()
