from django.http import HttpResponse, JsonResponse
from django.urls import path


def index(request):
    return HttpResponse("hello from django")


def item(request, item_id):
    return JsonResponse({"item": item_id})


def boom(request):
    raise RuntimeError("django view failed")


urlpatterns = [
    path("", index),
    path("warmup", index),
    path("items/<int:item_id>/", item),
    path("boom", boom),
]
