from typing import Any

from rest_framework import serializers

from .models import Card, IdentityCheck, Letter, Payment, Transfer


class PaymentSerializer(serializers.ModelSerializer[Payment]):
    class Meta:
        model = Payment
        fields = ["id", "amount", "currency", "description", "status", "refunded_amount", "created"]
        read_only_fields = ["status", "refunded_amount", "created"]


class RefundSerializer(serializers.Serializer[Any]):
    amount = serializers.IntegerField(min_value=1, required=False)


class CardSerializer(serializers.ModelSerializer[Card]):
    token = serializers.CharField(source="pk", read_only=True)

    class Meta:
        model = Card
        fields = [
            "token",
            "type",
            "memo",
            "spend_limit",
            "state",
            "last_four",
            "renewals",
            "created",
        ]
        read_only_fields = ["state", "last_four", "renewals", "created"]


class IdentityCheckSerializer(serializers.ModelSerializer[IdentityCheck]):
    class Meta:
        model = IdentityCheck
        fields = ["id", "kind", "country", "reference", "status", "created"]
        read_only_fields = ["kind", "status", "created"]


class LetterSerializer(serializers.ModelSerializer[Letter]):
    class Meta:
        model = Letter
        fields = ["id", "recipient", "address", "pages", "test", "created"]
        read_only_fields = ["created"]


class TransferSerializer(serializers.ModelSerializer[Transfer]):
    class Meta:
        model = Transfer
        fields = ["id", "amount", "currency", "destination", "external_id", "created"]
        read_only_fields = ["created"]
