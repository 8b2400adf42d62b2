import os

from django.http import HttpResponse
from django.templatetags.static import static
from django.urls import path


def index(request):
    greeting = os.environ.get("GREETING", "Hello")
    return HttpResponse(f"{greeting} from django! css: {static('site.css')}\n", content_type="text/plain")


urlpatterns = [path("", index)]
