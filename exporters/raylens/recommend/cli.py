"""placeholder"""


def add_recommend_commands(commands):
    pass
