"""Private paths from the eksctl VPC to the AWS APIs the serving path uses: S3, SageMaker, ECR, Logs, STS."""

from __future__ import annotations

from aws_cdk import CfnOutput, CfnParameter, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from .config import InfraConfig
from .nag import ack
from .naming import STACKS

# sagemaker.runtime: InvokeEndpoint; sagemaker.api: deploy/describe; ecr.api + ecr.dkr: image pulls (layers come
# through the S3 gateway); logs: container logs; sts: IRSA's AssumeRoleWithWebIdentity.
INTERFACE_SERVICES = ("sagemaker.runtime", "sagemaker.api", "ecr.api", "ecr.dkr", "logs", "sts")


class NetworkStack(Stack):
    def __init__(self, scope: Construct, cfg: InfraConfig, **kwargs: object) -> None:
        super().__init__(
            scope,
            "Network",
            stack_name=STACKS["network"],
            description="resnet-serving VPC endpoints on the existing (eksctl) VPC",
            **kwargs,  # type: ignore[arg-type]
        )
        # Parameters, not a VPC lookup: synth needs no AWS account, and the template fits any VPC.
        vpc_id = CfnParameter(self, "VpcId", type="AWS::EC2::VPC::Id", description="the eksctl cluster's VPC")
        cidr = CfnParameter(
            self,
            "VpcCidr",
            type="String",
            description="the VPC's CIDR block: HTTPS to the interface endpoints is allowed from it",
            allowed_pattern=r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$",
        )
        subnets = CfnParameter(
            self,
            "PrivateSubnetIds",
            type="List<AWS::EC2::Subnet::Id>",
            description="one private subnet per zone for the interface endpoints",
        )
        route_tables = CfnParameter(
            self,
            "PrivateRouteTableIds",
            type="CommaDelimitedList",
            description="the private subnets' route tables, for the S3 gateway endpoint",
        )

        sg = ec2.CfnSecurityGroup(
            self,
            "EndpointSecurityGroup",
            group_description="resnet-serving VPC interface endpoints: HTTPS from inside the VPC only",
            vpc_id=vpc_id.value_as_string,
            security_group_ingress=[
                ec2.CfnSecurityGroup.IngressProperty(
                    ip_protocol="tcp",
                    from_port=443,
                    to_port=443,
                    cidr_ip=cidr.value_as_string,
                    description="HTTPS from the VPC to the AWS service endpoints",
                )
            ],
            # Endpoint ENIs only answer; this placeholder rule replaces the default allow-all egress.
            security_group_egress=[
                ec2.CfnSecurityGroup.EgressProperty(
                    ip_protocol="icmp",
                    from_port=252,
                    to_port=86,
                    cidr_ip="255.255.255.255/32",
                    description="no egress: interface endpoints never open connections",
                )
            ],
        )

        ack(
            sg,
            "AwsSolutions-EC23",
            "Ingress is port 443 from the VpcCidr parameter (the VPC's own block); cdk-nag cannot resolve a parameter.",
        )
        ec2.CfnVPCEndpoint(
            self,
            "S3Gateway",
            vpc_id=vpc_id.value_as_string,
            service_name=Fn.sub("com.amazonaws.${AWS::Region}.s3"),
            vpc_endpoint_type="Gateway",
            route_table_ids=route_tables.value_as_list,
        )
        for service in INTERFACE_SERVICES:
            ec2.CfnVPCEndpoint(
                self,
                "Endpoint" + "".join(part.capitalize() for part in service.split(".")),
                vpc_id=vpc_id.value_as_string,
                service_name=Fn.sub(f"com.amazonaws.${{AWS::Region}}.{service}"),
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=subnets.value_as_list,
                security_group_ids=[sg.attr_group_id],
            )
        CfnOutput(self, "EndpointSecurityGroupId", value=sg.attr_group_id)
