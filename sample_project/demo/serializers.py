from rest_framework import serializers

from .models import Card, IdentityCheck, Letter, Payment, Transfer


class PaymentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Payment
        fields = ["id", "amount", "currency", "description", "status", "refunded_amount", "created"]
        read_only_fields = ["status", "refunded_amount", "created"]


class RefundSerializer(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1, required=False)


class CardSerializer(serializers.ModelSerializer):
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


class IdentityCheckSerializer(serializers.ModelSerializer):
    class Meta:
        model = IdentityCheck
        fields = ["id", "kind", "country", "reference", "status", "created"]
        read_only_fields = ["kind", "status", "created"]


class LetterSerializer(serializers.ModelSerializer):
    class Meta:
        model = Letter
        fields = ["id", "recipient", "address", "pages", "test", "created"]
        read_only_fields = ["created"]


class TransferSerializer(serializers.ModelSerializer):
    class Meta:
        model = Transfer
        fields = ["id", "amount", "currency", "destination", "external_id", "created"]
        read_only_fields = ["created"]
