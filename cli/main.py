import click

from aigcguard import __version__
from aigcguard.cli.watermark import watermark_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aigc")
def main() -> None:
    """aigc-guard: where did this image come from?"""


main.add_command(watermark_group)
