"""Hidden Slicer module that carries CardioQuant's shared code (the `cardioquant` package) into Slicer."""

from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class CardioQuantCore(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "CardioQuant Core"
        self.parent.categories = ["Cardiac"]
        self.parent.contributors = ["CardioQuant developers"]
        self.parent.helpText = "Shared code of the CardioQuant modules (not shown in the module list)."
        self.parent.acknowledgementText = ""
        self.parent.hidden = True
