import click

from aigcguard import __version__
from aigcguard.cli.batch import batch_group
from aigcguard.cli.check import check_cmd
from aigcguard.cli.detect import detect_cmd, detector_group
from aigcguard.cli.evaluate import eval_group
from aigcguard.cli.generate import generate_cmd
from aigcguard.cli.provenance import provenance_group
from aigcguard.cli.serve import serve_cmd
from aigcguard.cli.similarity import audit_cmd, index_group, similar_cmd
from aigcguard.cli.watermark import watermark_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aigc")
def main() -> None:
    """aigc-guard: where did this image come from?"""


main.add_command(watermark_group)
main.add_command(index_group)
main.add_command(similar_cmd)
main.add_command(eval_group)
main.add_command(audit_cmd)
main.add_command(detect_cmd)
main.add_command(detector_group)
main.add_command(provenance_group)
main.add_command(generate_cmd)
main.add_command(check_cmd)
main.add_command(serve_cmd)
main.add_command(batch_group)
