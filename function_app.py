"""Azure Functions entry point: decorators only; the work lives in `shared/`."""
import azure.functions as func

app = func.FunctionApp()
