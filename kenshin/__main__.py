from kenshin.cli import app

app()
